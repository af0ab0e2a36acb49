/**
 * API keys: the list, and the create form whose answer shows the new secret
 * once (it is stored only as a hash; closing the box forgets it).
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import type { ApiKey } from "../../gen/formstate/v1/api_key_service_pb.js";
import { h, replace } from "../dom.js";
import { keyStatusLabel, scopeLabel } from "../labels.js";

export function renderKeyList(tbody: HTMLElement, keys: readonly ApiKey[]): void {
  if (keys.length === 0) {
    replace(tbody, h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No API keys yet.")));
    return;
  }
  replace(
    tbody,
    ...keys.map((k) =>
      h(
        "tr",
        { "data-key": k.name },
        h("td", {}, k.displayName || "(unnamed)"),
        h("td", { class: "mono" }, `${k.start}…`),
        h("td", {}, k.scopes.map(scopeLabel).join(", ")),
        h("td", {}, keyStatusLabel(k.status)),
        h("td", {}, k.createTime ? timestampDate(k.createTime).toISOString().replace("T", " ").slice(0, 16) : ""),
      ),
    ),
  );
}

/** The scope chosen in the create form. */
export function scopeFromForm(value: string): Scope {
  return value === "admin" ? Scope.ADMIN : value === "write" ? Scope.WRITE : Scope.READ;
}

/** Shows the new key's secret with a button that hides it for good. */
export function showSecretOnce(box: HTMLElement, secret: string): void {
  const code = h("code", { id: "new-key-secret", class: "mono" }, secret);
  const done = h("button", { type: "button", id: "new-key-done" }, "I have stored it");
  done.addEventListener("click", () => {
    replace(box);
    box.hidden = true;
  });
  replace(box, h("p", {}, "Copy this key now. It will not be shown again."), code, done);
  box.hidden = false;
}
