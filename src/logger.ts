/** Structured logs (pino). Credentials never reach a log line: the redact list is the backstop. */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "formstate" },
    redact: {
      paths: ["authorization", "*.authorization", "headers.authorization", "headers[\"x-api-key\"]", "token", "*.token", "secret", "*.secret"],
      censor: "[redacted]",
    },
  });
}
