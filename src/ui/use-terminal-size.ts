import { useStdout } from 'ink';
import { useEffect, useState } from 'react';

export interface TerminalSize {
  readonly columns: number;
  readonly rows: number;
}

/** Assumed when the output stream does not say (80×24 is what everything must fit). */
const FALLBACK: TerminalSize = { columns: 80, rows: 24 };

/** The terminal's size, updated on resize; `fixed` overrides it (tests, and `--size`-like callers). */
export function useTerminalSize(fixed?: TerminalSize): TerminalSize {
  const { stdout } = useStdout();
  const read = (): TerminalSize => ({ columns: stdout.columns || FALLBACK.columns, rows: stdout.rows || FALLBACK.rows });
  const [size, setSize] = useState<TerminalSize>(read);
  useEffect(() => {
    if (fixed) return;
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
    // read() only depends on stdout (no react-hooks lint plugin here to say so).
  }, [stdout, fixed]);
  return fixed ?? size;
}
