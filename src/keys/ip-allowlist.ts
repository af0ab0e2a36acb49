/** IP allowlists (CIDR) with Node's BlockList; addresses normalised so IPv4-mapped IPv6 matches IPv4 rules. */
import net from "node:net";

/** `::ffff:1.2.3.4` -> `1.2.3.4`. */
export function normalizeIp(ip: string): string {
  return ip.startsWith("::ffff:") && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

const cache = new Map<string, net.BlockList>();

function blockListOf(cidrs: readonly string[]): net.BlockList {
  const key = cidrs.join(",");
  let list = cache.get(key);
  if (!list) {
    list = new net.BlockList();
    for (const cidr of cidrs) {
      const [addr, bits] = cidr.split("/");
      const family = net.isIPv6(addr) ? "ipv6" : "ipv4";
      list.addSubnet(addr, bits === undefined ? (family === "ipv6" ? 128 : 32) : Number(bits), family);
    }
    if (cache.size > 10_000) cache.clear();
    cache.set(key, list);
  }
  return list;
}

/** Whether `ip` is inside one of the prefixes; an empty list allows every address. */
export function ipAllowed(cidrs: readonly string[], ip: string): boolean {
  if (cidrs.length === 0) return true;
  const addr = normalizeIp(ip);
  const family = net.isIPv6(addr) ? "ipv6" : net.isIPv4(addr) ? "ipv4" : undefined;
  return family !== undefined && blockListOf(cidrs).check(addr, family);
}
