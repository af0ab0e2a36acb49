/**
 * Checks made before the server opens anything, so that a path it cannot use
 * fails start-up at once with the path, the variable that set it and the
 * reason, instead of a bare "unable to open database file" later.
 */
import { existsSync, mkdirSync, rmdirSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** A start-up failure whose message is complete: printed as is, without a stack. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

const REASONS: Record<string, string> = {
  EROFS: "the file system is read-only",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  ENOTDIR: "a part of the path is a file, not a directory",
  EEXIST: "a file is in the way",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "the path is too long",
};

/** Why a file-system call failed, in words, with the errno code. */
export function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && REASONS[code]) return `${REASONS[code]} (${code})`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Creates `dir` if needed and proves it writable by writing and removing a
 * probe file (mode bits do not tell: a read-only mount, root, ACLs).
 * Returns why it is not writable, or undefined when it is.
 */
export function writeProblem(dir: string): string | undefined {
  try {
    mkdirSync(dir, { recursive: true });
    const probe = join(dir, `.formstate-write-check-${process.pid}`);
    writeFileSync(probe, "");
    unlinkSync(probe);
    return undefined;
  } catch (err) {
    return fsReason((err as NodeJS.ErrnoException).code === "ENOENT" ? (firstMissingError(dir) ?? err) : err);
  }
}

/**
 * Node's recursive mkdir reports ENOENT when a parent cannot be made, even on
 * a read-only file system; making the first missing directory alone gives
 * the real reason (EROFS, EACCES, ...).
 */
function firstMissingError(dir: string): unknown {
  let missing = dir;
  while (!existsSync(dirname(missing)) && dirname(missing) !== missing) missing = dirname(missing);
  try {
    mkdirSync(missing);
    rmdirSync(missing);
    return undefined;
  } catch (err) {
    return err;
  }
}

/**
 * The directories the server writes to, checked before anything is opened:
 * the data directory when the development issuer keeps its key there, and
 * the SQLite database's directory (its -wal and -shm files live beside it).
 */
export function checkWritablePaths(paths: { dataDir?: string; sqliteFile?: string; sqliteFrom: "DATABASE_URL" | "FORMSTATE_DATA_DIR" }): void {
  if (paths.dataDir) {
    const problem = writeProblem(paths.dataDir);
    if (problem) throw new StartupError(`FORMSTATE_DATA_DIR ${paths.dataDir} is not writable: ${problem}`);
  }
  if (paths.sqliteFile) {
    const dir = dirname(paths.sqliteFile);
    const problem = writeProblem(dir);
    if (problem) throw new StartupError(`cannot open the SQLite database ${paths.sqliteFile} (from ${paths.sqliteFrom}): its directory ${dir} is not writable: ${problem}`);
  }
}
