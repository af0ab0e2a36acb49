/** Stored names <-> wire enum values for the catalog's status and visibility enums (0, unspecified, is ""). */
export function wireEnum<E extends number>(byName: Record<string, E>) {
  const byValue = new Map<number, string>(Object.entries(byName).map(([name, value]) => [value, name]));
  return {
    /** The stored name of a wire value; "" for unspecified or unknown. */
    name: (value: E): string => byValue.get(value) ?? "",
    /** The wire value of a stored name; 0 (unspecified) for an unknown one. */
    wire: (name: string): E => byName[name] ?? (0 as E),
  };
}
