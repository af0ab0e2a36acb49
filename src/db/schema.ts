/** Every table, by name: the type Kysely checks queries against. */
import type { AccountTable } from "../accounts/account-table.js";
import type { MemberTable } from "../accounts/member-table.js";
import type { BillingCustomerTable, CheckoutFulfillmentTable, MeterOutboxTable, StripeEventTable } from "../billing/billing-tables.js";
import type { AgentTable, HireTable, ModelPriceTable, ModelTable } from "../catalog/catalog-tables.js";
import type { ApiKeyEventTable, ApiKeyIpTable } from "../keys/api-key-event-table.js";
import type { ApiKeyTable } from "../keys/api-key-table.js";
import type { CreditTransactionTable } from "../ledger/credit-transaction-table.js";
import type { AuthSessionTable, SessionCutoffTable } from "../sessions/session-tables.js";
import type { WalletBindingTable, WalletBudgetTable, WalletChallengeTable } from "../wallets/wallet-tables.js";
import type { AlertFiringTable, AlertRuleTable, WebhookDeliveryTable } from "../alerts/alert-tables.js";
import type { LedgerEntryHashTable } from "../receipts/receipt-tables.js";
import type { X402PaymentTable } from "../x402/x402-tables.js";
import type { PayoutAccountTable, PayoutTable, PublisherEarningTable } from "../marketplace/marketplace-tables.js";
import type { UsageAuthorizationTable, UsageRecordTable, UsageRollupTable } from "../usage/usage-tables.js";

export interface DatabaseSchema {
  account: AccountTable;
  member: MemberTable;
  api_key: ApiKeyTable;
  api_key_event: ApiKeyEventTable;
  api_key_ip: ApiKeyIpTable;
  credit_transaction: CreditTransactionTable;
  usage_record: UsageRecordTable;
  usage_rollup: UsageRollupTable;
  usage_authorization: UsageAuthorizationTable;
  model: ModelTable;
  agent: AgentTable;
  hire: HireTable;
  model_price: ModelPriceTable;
  billing_customer: BillingCustomerTable;
  stripe_event: StripeEventTable;
  checkout_fulfillment: CheckoutFulfillmentTable;
  meter_outbox: MeterOutboxTable;
  wallet_challenge: WalletChallengeTable;
  wallet_binding: WalletBindingTable;
  wallet_budget: WalletBudgetTable;
  auth_session: AuthSessionTable;
  session_cutoff: SessionCutoffTable;
  x402_payment: X402PaymentTable;
  alert_rule: AlertRuleTable;
  alert_firing: AlertFiringTable;
  webhook_delivery: WebhookDeliveryTable;
  ledger_entry_hash: LedgerEntryHashTable;
  publisher_earning: PublisherEarningTable;
  payout_account: PayoutAccountTable;
  payout: PayoutTable;
}
