/** Every table, by name: the type Kysely checks queries against. */
import type { AccountTable } from "../accounts/account-table.js";
import type { MemberTable } from "../accounts/member-table.js";

export interface DatabaseSchema {
  account: AccountTable;
  member: MemberTable;
}
