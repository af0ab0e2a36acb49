/** The receipt method of BillingService over the wire. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { callerOf } from "../auth/principal.js";
import { childOf } from "../auth/tenancy.js";
import { callerEnvironment } from "../ledger/sandbox.js";
import { RECEIPT_JWKS_PATH } from "./receipt-chain.js";
import type { Receipts } from "./receipts.js";

/** The BillingService methods this module serves. */
export type ReceiptMethods = Pick<ServiceImpl<typeof BillingService>, "getCreditTransactionReceipt">;

export function receiptMethods(receipts: Receipts, publicUrl?: string): ReceiptMethods {
  return {
    async getCreditTransactionReceipt(req, ctx) {
      const { project, id } = childOf(ctx, "creditTransactions");
      // A key reads only its own ledger: the other one's entries are NOT_FOUND, as missing ones are.
      const caller = callerOf(ctx);
      const { jws, claim } = await receipts.receipt(project, id, caller.kind === "api_key" ? callerEnvironment(caller) : undefined);
      return { receipt: jws, entryHash: claim.entry_hash, previousEntryHash: claim.previous_entry_hash, jwksUri: `${publicUrl ?? new URL(ctx.url).origin}${RECEIPT_JWKS_PATH}` };
    },
  };
}
