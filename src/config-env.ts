/**
 * Reading environment variables for config: blank means unset, and every bad
 * value adds one line to `problems` (config reports them all at once).
 */
export interface EnvReader {
  /** The trimmed value; undefined when unset or blank. */
  str(name: string): string | undefined;
  /** A whole number in [min, max]; the default when unset; a problem (and the default) otherwise. */
  int(name: string, def: number, min: number, max: number): number;
}

export function envReader(env: NodeJS.ProcessEnv, problems: string[]): EnvReader {
  const str = (name: string) => {
    const v = env[name]?.trim();
    return v === "" ? undefined : v;
  };
  const int = (name: string, def: number, min: number, max: number) => {
    const raw = str(name);
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a whole number from ${min} to ${max}`);
      return def;
    }
    return n;
  };
  return { str, int };
}
