/**
 * The ordered list of migrations. Listed in code, not discovered on disk, so
 * bundling and vitest (which cannot import .ts through FileMigrationProvider) work.
 *
 * Every migration runs on SQLite and PostgreSQL: Kysely's schema builder with
 * `text`, `integer` and `bigint` columns (money and epoch-ms times are
 * `bigint`, read back as JS numbers on both); booleans as `integer` 0/1; JSON
 * as `text`; no SQLite-only SQL (`INSERT OR …`, `strftime`, `json_*`) in raw
 * `sql`; an `onConflict` target needs a unique index or primary key on those
 * columns. `npm run test:pg` runs them on PostgreSQL.
 */
import type { Migration, MigrationProvider } from "kysely";
import * as m0001 from "./0001-accounts.js";
import * as m0002 from "./0002-api-keys.js";
import * as m0003 from "./0003-usage.js";
import * as m0004 from "./0004-catalog.js";
import * as m0005 from "./0005-billing.js";
import * as m0006 from "./0006-catalog-prices.js";
import * as m0007 from "./0007-wallets-sessions.js";
import * as m0008 from "./0008-finance.js";
import * as m0012 from "./0012-marketplace.js";
import * as m0013 from "./0013-rails.js";
import * as m0014 from "./0014-sandbox.js";
import * as m0015 from "./0015-agent-namespaces.js";
import * as m0016 from "./0016-test-mode-projects.js";
import * as m0017 from "./0017-partial-usage-indexes.js";

const migrations: Record<string, Migration> = {
  "0001-accounts": m0001,
  "0002-api-keys": m0002,
  "0003-usage": m0003,
  "0004-catalog": m0004,
  "0005-billing": m0005,
  "0006-catalog-prices": m0006,
  "0007-wallets-sessions": m0007,
  "0008-finance": m0008,
  "0012-marketplace": m0012,
  "0013-rails": m0013,
  "0014-sandbox": m0014,
  "0015-agent-namespaces": m0015,
  "0016-test-mode-projects": m0016,
  "0017-partial-usage-indexes": m0017,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
