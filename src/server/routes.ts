/** Every service on the port, in one place. */
import type { ConnectRouter } from "@connectrpc/connect";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { AgentService } from "../../gen/formstate/v1/agent_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { accountService } from "../accounts/account-service.js";
import type { App } from "../app.js";
import { billingService } from "../billing/billing-service.js";
import { agentService } from "../catalog/agent-service.js";
import { modelService } from "../catalog/model-service.js";
import { apiKeyService } from "../keys/api-key-service.js";
import { publisherMethods } from "../marketplace/publisher-methods.js";
import { usageService } from "../usage/usage-service.js";
import { alertMethods } from "../alerts/alert-service.js";
import { receiptMethods } from "../receipts/receipt-service.js";
import { eventMethods } from "../events/event-stream.js";
import { formstateFiles } from "./services.js";
import { registerHealth } from "./health.js";
import { registerReflection } from "./reflection.js";

export function registerRoutes(router: ConnectRouter, app: App): void {
  router.service(AccountService, accountService(app.accounts, app.wallets, app.sessions));
  router.service(
    ApiKeyService,
    apiKeyService({
      keys: app.apiKeys,
      limiter: app.limiter,
      plans: app.plans,
      now: () => app.clock.now(),
      planOf: (p) => app.accounts.planOf(p),
      creditBalance: (p, env, since) => app.accounts.creditBalance(p, env, since),
    }),
  );
  router.service(UsageService, {
    ...usageService(app.usage, app.usageReports),
    ...alertMethods(app.alerts),
    ...eventMethods({ hub: app.events, clock: app.clock, heartbeatMs: app.config.alerts.eventHeartbeatMs, accountExists: (p) => app.accounts.exists(p) }),
  });
  router.service(BillingService, { ...billingService(app.billing), ...receiptMethods(app.receipts, app.config.publicUrl), ...publisherMethods(app.marketplace) });
  router.service(AgentService, agentService(app.agents, app.usage));
  router.service(ModelService, modelService(app.models));
  registerHealth(router, app.health);
  registerReflection(router, formstateFiles);
}
