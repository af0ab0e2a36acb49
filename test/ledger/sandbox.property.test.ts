/**
 * Who is in test mode, as a property over every shape of caller
 * (docs/test-mode.md): the sandbox is used exactly by test keys and by any
 * caller of a test-mode project; real money is refused exactly to those
 * callers, a test-mode project's callers with FAILED_PRECONDITION
 * TEST_MODE_PROJECT and a live project's test keys with PERMISSION_DENIED
 * TEST_MODE_KEY; a key never reads the other environment's reports.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { type EnvironmentCaller, callerEnvironment, readEnvironment, requireLiveMoney } from "../../src/ledger/sandbox.js";

const callerArb: fc.Arbitrary<EnvironmentCaller> = fc.record(
  {
    kind: fc.constantFrom("user", "api_key", "anonymous"),
    environment: fc.constantFrom("live" as const, "test" as const),
    testProject: fc.boolean(),
  },
  { requiredKeys: ["kind"] },
);

const refusal = (caller: EnvironmentCaller) => {
  try {
    requireLiveMoney(caller);
    return undefined;
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: ce.code, reason: ce.findDetails(ErrorInfoSchema)[0]?.reason };
  }
};

describe("test mode, per caller", () => {
  it("the sandbox is exactly test keys and test-mode projects; real money is refused exactly there, with the reason that fits", () => {
    fc.assert(
      fc.property(callerArb, (caller) => {
        const testKey = caller.kind === "api_key" && caller.environment === "test";
        const test = Boolean(caller.testProject) || testKey;
        expect(callerEnvironment(caller)).toBe(test ? "test" : "live");
        const r = refusal(caller);
        if (!test) expect(r).toBeUndefined();
        else if (caller.testProject) expect(r).toEqual({ code: Code.FailedPrecondition, reason: "TEST_MODE_PROJECT" });
        else expect(r).toEqual({ code: Code.PermissionDenied, reason: "TEST_MODE_KEY" });
      }),
    );
  });

  it("reports default to the caller's environment; a key never reads the other one, a user may", () => {
    fc.assert(
      fc.property(callerArb, fc.constantFrom(KeyEnvironment.UNSPECIFIED, KeyEnvironment.LIVE, KeyEnvironment.TEST), (caller, asked) => {
        const own = callerEnvironment(caller);
        const wanted = asked === KeyEnvironment.UNSPECIFIED ? own : asked === KeyEnvironment.TEST ? "test" : "live";
        if (caller.kind === "api_key" && wanted !== own) expect(() => readEnvironment(caller, asked)).toThrow(/reads only/);
        else expect(readEnvironment(caller, asked)).toBe(wanted);
      }),
    );
  });
});
