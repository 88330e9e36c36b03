import { Text } from 'ink';
import type { StageStats } from '../stats/snapshot.js';
import { stagesText } from './text.js';

export interface StagePanelProps {
  readonly stages: readonly StageStats[];
}

/**
 * The workers' simulated processing stages (`worker --stage`), on one line: per stage, walks inside
 * it now, p50/p99 time, declines (✗) and fails (!). Shown only when some worker has stages.
 */
export function StagePanel({ stages }: StagePanelProps) {
  return (
    <Text wrap="truncate">
      <Text bold>{'stages in · p50/p99 · ✗declined !failed  '}</Text>
      {stagesText(stages)}
    </Text>
  );
}
