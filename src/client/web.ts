/** The browser client: Connect-Web over fetch, typed clients for every service. */
import { createConnectTransport } from "@connectrpc/connect-web";
import { type Credentials, type FormstateClients, authInterceptor, clientsFor } from "./common.js";

export * from "./common.js";

export type FormstateWebClientOptions = { baseUrl: string } & Credentials;

export function createFormstateClient(options: FormstateWebClientOptions): FormstateClients {
  const { baseUrl, ...credentials } = options;
  return clientsFor(createConnectTransport({ baseUrl, interceptors: [authInterceptor(credentials as Credentials)] }));
}
