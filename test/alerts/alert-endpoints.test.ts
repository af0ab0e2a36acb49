/** Which webhook endpoints production refuses by literal address (no webhooks into the server's own network). */
import { describe, expect, it } from "vitest";
import { isInternalHost } from "../../src/alerts/spend-alerts.js";

describe("isInternalHost", () => {
  it("refuses loopback, private, link-local and unspecified literals, and localhost names", () => {
    for (const h of ["localhost", "api.localhost", "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "[::1]", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1"]) {
      expect(isInternalHost(h), h).toBe(true);
    }
  });
  it("allows public addresses and names", () => {
    for (const h of ["example.com", "8.8.8.8", "172.32.0.1", "192.169.0.1", "2606:4700::1111", "hooks.customer.io"]) expect(isInternalHost(h), h).toBe(false);
  });
});
