/**
 * Checks made before the server opens anything, so that a path it cannot use
 * fails start-up at once with the path, the variable that set it and the
 * reason, instead of a bare "unable to open database file" later.
 */
import { mkdirSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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
 * `source` names where the path came from, for the message.
 */
export function checkWritableDir(dir: string, source: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    const probe = join(dir, `.formstate-write-check-${process.pid}`);
    writeFileSync(probe, "");
    unlinkSync(probe);
  } catch (err) {
    throw new StartupError(`${source} ${dir} is not writable: ${fsReason(err)}`);
  }
}
