/**
 * The browser client: Connect-Web over fetch, typed clients for every
 * service, and scoped task keys (release with `await using` where the
 * bundler compiles it, or `dispose()`).
 */
import { createConnectTransport } from "@connectrpc/connect-web";
import { type Credentials, type FormstateClient, createClientWith } from "./common.js";

export * from "./common.js";

/** `project` is needed only for scopedKey (it names the account the key belongs to). */
export type FormstateWebClientOptions = { baseUrl: string; project?: string } & Credentials;

export function createFormstateClient(options: FormstateWebClientOptions): FormstateClient {
  const { baseUrl, project, ...credentials } = options;
  return createClientWith((interceptors) => createConnectTransport({ baseUrl, interceptors }), credentials as Credentials, project);
}
