/**
 * Read-only Fetch `Headers` over a node/undici header object (lower-case names, string or string[] values):
 * the part of the API that the openai SDK and yoga's plugins read, without copying the headers into a WHATWG
 * Headers object per request (a measurable cost on the hot paths: src/http/fast-path.ts, src/upstream/client.ts).
 */
export class NodeHeaders {
  constructor(private readonly raw: Record<string, string | string[] | undefined>) {}
  get(name: string): string | null {
    const v = this.raw[name.toLowerCase()];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
  }
  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }
  forEach(fn: (value: string, key: string) => void): void {
    for (const k of Object.keys(this.raw)) if (this.raw[k] !== undefined) fn(this.get(k)!, k);
  }
  *entries(): IterableIterator<[string, string]> {
    for (const k of Object.keys(this.raw)) if (this.raw[k] !== undefined) yield [k, this.get(k)!];
  }
  *keys(): IterableIterator<string> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): IterableIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}
