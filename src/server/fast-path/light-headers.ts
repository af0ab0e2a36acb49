/**
 * A `Headers` for the fast path's request, response and trailer metadata.
 *
 * WHATWG `Headers` (undici's) validates and converts every name and value
 * through webidl on every call and sorts on every iteration: three of them per
 * call showed as a few percent of an echo profile. Here names are lower-cased
 * and values kept as given; what reaches the wire is still checked by Node's
 * HTTP/2 layer when the answer is written (an invalid value ends the stream,
 * see `respond`). Same observable behaviour otherwise: case-insensitive
 * names, `append` joins with ", ", `set-cookie` kept as a list, iteration
 * sorted by name.
 */
export class LightHeaders implements Headers {
  private readonly map = new Map<string, string>();
  private cookies?: string[];

  /** From Node's incoming headers (pseudo-headers left out). */
  static fromNode(h: Record<string, string | string[] | undefined>): LightHeaders {
    const out = new LightHeaders();
    for (const k in h) {
      if (k.charCodeAt(0) === 58 /* ':' */) continue;
      const v = h[k];
      if (v === undefined) continue;
      if (typeof v === "string") out.append(k, v);
      else for (const e of v) out.append(k, e);
    }
    return out;
  }

  /** One entry, for the fast path's fixed headers. */
  static of(name: string, value: string): LightHeaders {
    const out = new LightHeaders();
    out.map.set(name, value);
    return out;
  }

  append(name: string, value: string): void {
    const k = name.toLowerCase();
    const v = String(value).trim();
    if (k === "set-cookie") {
      (this.cookies ??= []).push(v);
      return;
    }
    const prev = this.map.get(k);
    this.map.set(k, prev === undefined ? v : `${prev}, ${v}`);
  }

  delete(name: string): void {
    const k = name.toLowerCase();
    if (k === "set-cookie") this.cookies = undefined;
    else this.map.delete(k);
  }

  get(name: string): string | null {
    const k = name.toLowerCase();
    if (k === "set-cookie") return this.cookies?.length ? this.cookies.join(", ") : null;
    return this.map.get(k) ?? null;
  }

  getSetCookie(): string[] {
    return this.cookies ? [...this.cookies] : [];
  }

  has(name: string): boolean {
    const k = name.toLowerCase();
    return k === "set-cookie" ? Boolean(this.cookies?.length) : this.map.has(k);
  }

  set(name: string, value: string): void {
    const k = name.toLowerCase();
    const v = String(value).trim();
    if (k === "set-cookie") this.cookies = [v];
    else this.map.set(k, v);
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this);
  }

  *entries(): IterableIterator<[string, string]> {
    for (const k of this.sortedNames()) {
      if (k === "set-cookie") for (const c of this.cookies!) yield [k, c];
      else yield [k, this.map.get(k)!];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): IterableIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  /** The headers as Node's `writeHead`/`addTrailers` take them. */
  toNode(): Record<string, string | string[]> {
    // Sorted by name, as WHATWG Headers iterate, so the wire order matches Connect's handler.
    const out: Record<string, string | string[]> = {};
    for (const k of this.sortedNames()) out[k] = k === "set-cookie" ? [...this.cookies!] : this.map.get(k)!;
    return out;
  }

  /** Every name once, sorted, as WHATWG Headers iterate. */
  private sortedNames(): string[] {
    const names = [...this.map.keys()];
    if (this.cookies?.length) names.push("set-cookie");
    return names.sort();
  }
}
