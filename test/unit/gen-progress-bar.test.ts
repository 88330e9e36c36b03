import { describe, expect, it } from 'vitest';
import { formatEta, ProgressBar, progressLine } from '../../src/gen/progress-bar.js';

const progress = (confirmed: number, published = confirmed) => ({ published, confirmed, returned: 0, failed: 0 });

describe('gen progress bar', () => {
  it('a frame shows count, percentage, rate, ETA and what is in flight', () => {
    // 750 of 1500 confirmed in 3 s: 250 msg/s, 3 s to go.
    expect(progressLine(progress(750, 800), 1500, 3_000)).toBe(
      '[###############...............] 750/1500 50% 250 msg/s ETA 0:03, 50 in flight',
    );
    expect(progressLine(progress(0), 1500, 0)).toContain('0/1500 0% 0 msg/s ETA ?');
  });

  it('ETA reads as m:ss or h:mm:ss', () => {
    expect(formatEta(0)).toBe('0:00');
    expect(formatEta(61.2)).toBe('1:02');
    expect(formatEta(3 * 3600 + 7 * 60 + 5)).toBe('3:07:05');
    expect(formatEta(Number.POSITIVE_INFINITY)).toBe('?');
  });

  it('ends at 100 % and a newline, whatever the last redraw showed', () => {
    let out = '';
    const bar = new ProgressBar(1500, (t) => (out += t));
    bar.draw(progress(1445, 1500));
    bar.finish(progress(1500));
    const frames = out.split('\r').filter(Boolean);
    expect(frames.at(-1)).toMatch(/^\[#{30}\] 1500\/1500 100% \d+ msg\/s ETA 0:00, 0 in flight\n$/);
    expect(out.endsWith('\n')).toBe(true);
  });

  it('an interrupt ends the line at once, so the Ctrl-C message does not share it; the final frame gets its own line', () => {
    let out = '';
    const bar = new ProgressBar(100, (t) => (out += t));
    bar.draw(progress(40));
    bar.interrupt();
    expect(out.endsWith('\n')).toBe(true);
    out += 'stopping (send again to force)\n'; // what the logger writes next
    bar.draw(progress(50)); // held: nothing drawn over the log line
    expect(out.endsWith('stopping (send again to force)\n')).toBe(true);
    bar.finish(progress(60, 60));
    expect(out.split('\n').at(-2)).toMatch(/^\r\[.*\] 60\/100 60%/);
    expect(out.endsWith('\n')).toBe(true);
  });

  it('with nothing drawn, finishing writes nothing', () => {
    let out = '';
    new ProgressBar(10, (t) => (out += t)).finish(null);
    expect(out).toBe('');
  });
});
