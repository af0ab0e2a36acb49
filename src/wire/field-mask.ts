import type { FieldMask } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errors.js";

/**
 * The paths of an update_mask, checked against the fields an update may
 * change (AIP-134). An empty mask or an unknown path is INVALID_ARGUMENT.
 */
export function fieldMaskPaths<const P extends string>(mask: FieldMask | undefined, allowed: readonly P[]): P[] {
  const paths = mask?.paths ?? [];
  if (paths.length === 0) throw invalidArgument("update_mask", `must name at least one of: ${allowed.join(", ")}`);
  for (const p of paths) {
    if (!(allowed as readonly string[]).includes(p)) {
      throw invalidArgument("update_mask", `cannot update ${JSON.stringify(p)}; updatable fields: ${allowed.join(", ")}`);
    }
  }
  return paths as P[];
}
