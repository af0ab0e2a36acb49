/** One row of the bench table (bench/run.ts prints them; bench/pg-cluster.ts makes row 7). */
export interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  cpu: number;
  /** Server CPU time per answered call, µs: less disturbed than req/s by other load on shared cores. */
  cpuUs: number;
  rssMb: number;
  note?: string;
  /** Server-side latency of the round's method (src/server/latency.ts), ms. */
  serverP50?: number;
  serverP99?: number;
  /** The server's internal stages over the round (group commit, WAL sync), as `/debug/latency` names them. */
  stages?: { stage: string; count: number; p50Ms: number; p99Ms: number; maxMs: number }[];
}
