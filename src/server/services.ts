/** The six Formstate services and their proto files (for reflection and the policy walk). */
import type { DescFile } from "@bufbuild/protobuf";
import { AccountService, file_formstate_v1_account_service } from "../../gen/formstate/v1/account_service_pb.js";
import { AgentService, file_formstate_v1_agent_service } from "../../gen/formstate/v1/agent_service_pb.js";
import { ApiKeyService, file_formstate_v1_api_key_service } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService, file_formstate_v1_billing_service } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService, file_formstate_v1_model_service } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService, file_formstate_v1_usage_service } from "../../gen/formstate/v1/usage_service_pb.js";

export const formstateServices = [AccountService, ApiKeyService, UsageService, BillingService, AgentService, ModelService] as const;

export const formstateFiles: DescFile[] = [
  file_formstate_v1_account_service,
  file_formstate_v1_api_key_service,
  file_formstate_v1_usage_service,
  file_formstate_v1_billing_service,
  file_formstate_v1_agent_service,
  file_formstate_v1_model_service,
];
