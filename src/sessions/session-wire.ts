/** Sessions on the wire. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Session, SessionKind, SessionSchema } from "../../gen/formstate/v1/account_service_pb.js";
import { type SessionView, sessionName } from "./sessions.js";

export function toSession({ row, budget }: SessionView): Session {
  return create(SessionSchema, {
    name: sessionName(row.project_id, row.session_id),
    kind: row.kind === "wallet" ? SessionKind.WALLET_TOKEN : SessionKind.IDP_TOKEN,
    subject: row.subject,
    createTime: timestampFromMs(row.create_time),
    lastSeenTime: timestampFromMs(row.last_seen_time),
    expireTime: row.expire_time === null ? undefined : timestampFromMs(row.expire_time),
    revokeTime: row.revoke_time === null ? undefined : timestampFromMs(row.revoke_time),
    budgetMicros: BigInt(budget?.limit ?? 0),
    budgetSpentMicros: BigInt(budget?.spent ?? 0),
  });
}
