/**
 * Which client-chosen operation names get a label value of their own in /metrics. Each value is a series, so
 * the set must be bounded; but a bound filled by the first names ever seen (any 200 probes) would hide real
 * traffic for the life of the process. So:
 * - the names of the schema's example operations (what GraphiQL and the docs use) always have their label;
 * - up to `slots` further names have one, chosen again every `windowMs` as the busiest of the last window;
 *   names that drop out get their series removed (`onDropped`), and count as "other" until they are busy again;
 * - a name that is not a GraphQL name (or is longer than 64 characters) is always "other".
 * Hits are counted for at most `slots` + `candidates` names per window, so the counting is bounded too.
 */
const GRAPHQL_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export interface OperationLabelsOptions {
  /** Names that always keep their label (the example operations'). */
  reserved: Iterable<string>;
  /** Other names with a label at once. Default 200. */
  slots?: number;
  /** Names beyond the slots whose hits are counted per window. Default 1000. */
  candidates?: number;
  /** How often the busiest names are chosen again, in ms. Default 60 s. */
  windowMs?: number;
  /** Called with the names whose label values are withdrawn (their series should be removed). */
  onDropped?: (names: string[]) => void;
  now?: () => number;
}

export class OperationNameLabels {
  private readonly reserved: ReadonlySet<string>;
  private readonly slots: number;
  private readonly candidates: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private current = new Set<string>();
  private hits = new Map<string, number>();
  private windowEnds: number;
  /** Bumped whenever `current` changes: cached labels older than this are recomputed. */
  generation = 0;

  constructor(private readonly opts: OperationLabelsOptions) {
    this.reserved = new Set(opts.reserved);
    this.slots = opts.slots ?? 200;
    this.candidates = opts.candidates ?? 1000;
    this.windowMs = opts.windowMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.windowEnds = this.now() + this.windowMs;
  }

  /** Counts one use of `name` and says under which label value it goes. */
  label(name: string): string {
    if (this.reserved.has(name)) return name;
    if (!GRAPHQL_NAME.test(name)) return 'other';
    if (this.now() >= this.windowEnds) this.rotate();
    const seen = this.hits.get(name);
    if (seen !== undefined) this.hits.set(name, seen + 1);
    else if (this.hits.size < this.slots + this.candidates) this.hits.set(name, 1);
    if (this.current.has(name)) return name;
    if (this.current.size < this.slots) {
      this.current.add(name);
      this.generation++;
      return name;
    }
    return 'other';
  }

  /** A new window: the busiest names of the last one keep (or get) the slots. */
  private rotate(): void {
    const busiest = [...this.hits.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, this.slots)
      .map(([n]) => n);
    const next = new Set(busiest);
    const dropped = [...this.current].filter((n) => !next.has(n));
    this.current = next;
    this.hits = new Map();
    this.windowEnds = this.now() + this.windowMs;
    this.generation++;
    if (dropped.length) this.opts.onDropped?.(dropped);
  }
}
