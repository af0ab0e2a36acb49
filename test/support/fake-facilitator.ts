/**
 * A local x402 facilitator over HTTP (`POST /verify`, `POST /settle`) for
 * tests. It behaves like a real one where the rail depends on it: a payload
 * signed "0xbad…" is invalid, an authorization nonce settles once (a second
 * settlement of the same nonce fails), every settlement gets its own
 * transaction hash. `down` makes it drop connections without an answer.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeFacilitator {
  url: string;
  /** Drop every connection unanswered (a facilitator that is down). */
  down: boolean;
  /** Requests received, by path. */
  calls: { verify: number; settle: number };
  /** Settlements made: transaction hash -> atomic amount. */
  settled: Map<string, string>;
  close(): Promise<void>;
}

type Body = { x402Version?: number; paymentPayload?: { payload?: { signature?: string; authorization?: { nonce?: string; value?: string; from?: string } } }; paymentRequirements?: { network?: string; amount?: string } };

export async function startFakeFacilitator(): Promise<FakeFacilitator> {
  const usedNonces = new Set<string>();
  const state: FakeFacilitator = { url: "", down: false, calls: { verify: 0, settle: 0 }, settled: new Map(), close: async () => {} };
  const server = http.createServer((req, res) => {
    if (state.down) return void req.socket.destroy();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Body;
      const auth = body.paymentPayload?.payload?.authorization;
      const signature = body.paymentPayload?.payload?.signature ?? "";
      const network = body.paymentRequirements?.network ?? "";
      const payer = auth?.from ?? "";
      const invalid = body.x402Version !== 2 ? "invalid_x402_version" : !signature.startsWith("0x") || signature.startsWith("0xbad") ? "invalid_exact_evm_payload_signature" : auth?.value !== body.paymentRequirements?.amount ? "invalid_exact_evm_payload_authorization_value" : undefined;
      const send = (v: unknown) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(v));
      };
      if (req.url === "/verify") {
        state.calls.verify++;
        const reason = invalid ?? (usedNonces.has(auth?.nonce ?? "") ? "invalid_exact_evm_payload_authorization_nonce_used" : undefined);
        return send(reason ? { isValid: false, invalidReason: reason, payer } : { isValid: true, payer });
      }
      if (req.url === "/settle") {
        state.calls.settle++;
        const reason = invalid ?? (usedNonces.has(auth?.nonce ?? "") ? "invalid_exact_evm_payload_authorization_nonce_used" : undefined);
        if (reason) return send({ success: false, errorReason: reason, payer, transaction: "", network });
        usedNonces.add(auth?.nonce ?? "");
        const transaction = `0x${createHash("sha256").update(`tx:${auth?.nonce}`).digest("hex")}`;
        state.settled.set(transaction, auth?.value ?? "");
        return send({ success: true, payer, transaction, network });
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
