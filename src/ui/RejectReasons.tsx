import { Text } from 'ink';

export interface RejectReasonsProps {
  readonly reasons: readonly { readonly reason: string; readonly count: number }[];
}

/** The most frequent reject reasons across all workers, on one line (same names as `inspect-errors`). */
export function RejectReasons({ reasons }: RejectReasonsProps) {
  return (
    <Text wrap="truncate">
      <Text bold>{'top rejects  '}</Text>
      {reasons.length === 0 ? <Text dimColor>none</Text> : reasons.map((r) => `${r.reason} ${r.count}`).join(' · ')}
    </Text>
  );
}
