/**
 * What the sign-in form turns into: the API's base URL, the credential
 * (a JWT or an API key, told apart by the key prefix as the server does) and
 * the project whose console this is.
 */
/** The two credentials a person can paste (the client also takes a token function). */
export type ConsoleCredential = { apiKey: string } | { token: string };

export interface Session {
  baseUrl: string;
  credential: ConsoleCredential;
  project: string;
}

const API_KEY = /^fs_(live|test)_/;
const PROJECT = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** An API key goes in `x-api-key`; anything else is a bearer token. */
export function credentialFrom(secret: string): ConsoleCredential {
  const s = secret.trim();
  return API_KEY.test(s) ? { apiKey: s } : { token: s };
}

/**
 * The project a JWT names (`project_id`, or `project`), read without
 * verifying: it only pre-fills the form; the server verifies every call.
 */
export function projectFromToken(secret: string): string | undefined {
  const parts = secret.trim().split(".");
  if (parts.length !== 3) return undefined;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json) as Record<string, unknown>;
    const p = claims.project_id ?? claims.project;
    return typeof p === "string" ? p : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The API base URL: the `api` query parameter when the console is served
 * from another origin (a static host), else the origin that served it
 * (Formstate's own `/console/`).
 */
export function defaultApiBase(location: Pick<Location, "search" | "origin">): string {
  return new URLSearchParams(location.search).get("api") ?? location.origin;
}

/** Checks the form's values; returns the session or a message for the user. */
export function sessionFrom(form: { baseUrl: string; secret: string; project: string }): Session | string {
  const secret = form.secret.trim();
  if (!secret) return "Paste a token or an API key.";
  let baseUrl: string;
  try {
    const u = new URL(form.baseUrl.trim());
    if (u.protocol !== "http:" && u.protocol !== "https:") return "The API URL must be http:// or https://.";
    baseUrl = u.origin + u.pathname.replace(/\/+$/, "");
  } catch {
    return "The API URL is not a URL.";
  }
  const project = form.project.trim() || projectFromToken(secret) || "";
  if (!PROJECT.test(project)) return "Name the project (lowercase letters, digits and dashes).";
  return { baseUrl, credential: credentialFrom(secret), project };
}
