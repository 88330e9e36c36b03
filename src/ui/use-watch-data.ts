import { useSyncExternalStore } from 'react';
import type { WatchData, WatchFeed } from './watch-state.js';

/** The feed's current frame; re-renders whenever the feed says it changed. */
export function useWatchData(feed: WatchFeed): WatchData {
  return useSyncExternalStore(
    (listener) => feed.subscribe(listener),
    () => feed.getData(),
  );
}
