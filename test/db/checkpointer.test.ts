/**
 * WAL checkpoints run in a worker thread (src/db/checkpointer.ts): the main
 * connection's automatic checkpoint is only a backstop, the worker copies the
 * committed WAL into the database file while writes go on, and closing the
 * store stops it. A real SQLite file, a real worker.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { sql } from "kysely";
import { describe, expect, it } from "vitest";
import { BACKSTOP_PAGES, startCheckpointer } from "../../src/db/checkpointer.js";
import type { Logger } from "../../src/logger.js";
import { openDatabase } from "../../src/db/database.js";

const until = async (check: () => boolean, ms = 10_000) => {
  for (const end = Date.now() + ms; !check(); ) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe("background WAL checkpoints", () => {
  it("copy committed pages into the database file off the main thread; the inline checkpoint is a backstop", async () => {
    const dir = mkdtempSync(join(tmpdir(), "formstate-ckpt-"));
    const file = join(dir, "s.db");
    try {
      const db = await openDatabase(file);
      expect((await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(db.db)).rows[0].wal_autocheckpoint).toBe(BACKSTOP_PAGES);
      await db.transaction(async (tx) => void (await sql`create table filler (i integer primary key, pad text)`.execute(tx)));
      const sizeBefore = statSync(file).size;
      // ~2 MB of committed rows: past any page the migrations left.
      for (let i = 0; i < 50; i++) {
        await db.transaction(async (tx) => {
          for (let j = 0; j < 10; j++) await sql`insert into filler (pad) values (${"x".repeat(4000)})`.execute(tx);
        });
      }
      const runs0 = db.checkpoints!();
      await until(() => db.checkpoints!() > runs0 + 1 && statSync(file).size > sizeBefore + 1_500_000);
      // Another connection reads every row (from the file, the WAL, or both).
      const other = new Sqlite(file, { readonly: true });
      expect(other.prepare("select count(*) as n from filler").get()).toEqual({ n: 500 });
      other.close();
      await db.close();
      const stopped = db.checkpoints!();
      await new Promise((r) => setTimeout(r, 300));
      expect(db.checkpoints!()).toBe(stopped);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a worker that cannot open the file says so in the log (the automatic checkpoint remains)", async () => {
    const warnings: string[] = [];
    const log = { warn: (_o: unknown, msg: string) => void warnings.push(msg) } as unknown as Logger;
    const dir = mkdtempSync(join(tmpdir(), "formstate-ckpt-"));
    try {
      const checkpointer = startCheckpointer(join(dir, "missing.db"), { log, intervalMs: 10 });
      await until(() => warnings.length > 0);
      expect(warnings[0]).toMatch(/checkpoint worker stopped/);
      await checkpointer.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an in-memory store has no worker", async () => {
    const db = await openDatabase(":memory:");
    expect(db.checkpoints).toBeUndefined();
    expect(db.walSyncs).toBeUndefined();
    await db.close();
  });
});
