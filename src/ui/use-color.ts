import { createContext, useContext } from 'react';

/**
 * Whether the TUI may use colours. https://no-color.org: a `NO_COLOR` variable that is present and
 * not empty turns colours off (chalk, which Ink colours with, does not look at it). Bold, dim and
 * inverse are kept: they are emphasis, not colour.
 */
export const ColorContext = createContext<boolean>(true);

/** True unless the environment asks for no colour (NO_COLOR set and not empty). */
export function colorsAllowed(env: NodeJS.ProcessEnv): boolean {
  return env.NO_COLOR === undefined || env.NO_COLOR === '';
}

/** A function for `color=` props: the colour, or undefined when colours are off. */
export function useColor(): (color: string | undefined) => string | undefined {
  const allowed = useContext(ColorContext);
  return (color) => (allowed ? color : undefined);
}
