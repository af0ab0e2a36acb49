/** Every service on the port, in one place. */
import type { DescFile } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { file_formstate_v1_account_service, AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { file_formstate_v1_agent_service, AgentService } from "../../gen/formstate/v1/agent_service_pb.js";
import { file_formstate_v1_api_key_service, ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { file_formstate_v1_billing_service, BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { file_formstate_v1_model_service, ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { file_formstate_v1_usage_service, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { accountService } from "../accounts/account-service.js";
import type { App } from "../app.js";
import { registerHealth } from "./health.js";
import { registerReflection } from "./reflection.js";

/** The six Formstate services. */
export const formstateServices = [AccountService, ApiKeyService, UsageService, BillingService, AgentService, ModelService] as const;

/** Their proto files, for reflection. */
export const formstateFiles: DescFile[] = [
  file_formstate_v1_account_service,
  file_formstate_v1_api_key_service,
  file_formstate_v1_usage_service,
  file_formstate_v1_billing_service,
  file_formstate_v1_agent_service,
  file_formstate_v1_model_service,
];

export function registerRoutes(router: ConnectRouter, app: App): void {
  router.service(AccountService, accountService(app.accounts));
  // Not built yet: Connect answers UNIMPLEMENTED for every method of an empty
  // implementation (after authentication and the access policy).
  router.service(ApiKeyService, {});
  router.service(UsageService, {});
  router.service(BillingService, {});
  router.service(AgentService, {});
  router.service(ModelService, {});
  registerHealth(router, app.health);
  registerReflection(router, formstateFiles);
}
