/** The receipt method of BillingService over the wire. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { unimplemented } from "../errors.js";

/** The BillingService methods this module serves. */
export type ReceiptMethods = Pick<ServiceImpl<typeof BillingService>, "getCreditTransactionReceipt">;

export function receiptMethods(): ReceiptMethods {
  return {
    getCreditTransactionReceipt() {
      throw unimplemented("GetCreditTransactionReceipt");
    },
  };
}
