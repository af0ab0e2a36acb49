/**
 * Writes the third-party protos the contract builds against into third_party/.
 *
 * There is no Buf Schema Registry here, so they come from npm packages:
 * - grpc/reflection/v1 and v1alpha: shipped as .proto files by @grpc/reflection;
 * - grpc/health/v1: shipped by grpc-health-check;
 * - google/rpc/error_details.proto (ErrorInfo, RetryInfo, BadRequest): shipped by google-proto-files;
 * - buf/validate/validate.proto: no package ships the source, but
 *   @bufbuild/protovalidate embeds its complete FileDescriptorProto, which this
 *   script prints back as proto source (options and custom options included).
 *
 * Run by `npm run generate`; the output is committed.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type DescExtension,
  type DescField,
  type DescMessage,
  type Message,
  getExtension,
  hasExtension,
  isFieldSet,
} from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "third_party");
const require = createRequire(import.meta.url);

function copyFrom(pkg: string, from: string, to: string) {
  const pkgDir = dirname(require.resolve(`${pkg}/package.json`));
  mkdirSync(dirname(join(out, to)), { recursive: true });
  copyFileSync(join(pkgDir, from), join(out, to));
}

copyFrom("@grpc/reflection", "build/proto/grpc/reflection/v1/reflection.proto", "grpc/reflection/v1/reflection.proto");
copyFrom(
  "@grpc/reflection",
  "build/proto/grpc/reflection/v1alpha/reflection.proto",
  "grpc/reflection/v1alpha/reflection.proto",
);
copyFrom("grpc-health-check", "proto/health/v1/health.proto", "grpc/health/v1/health.proto");
copyFrom("google-proto-files", "google/rpc/error_details.proto", "google/rpc/error_details.proto");

/** Extensions of the printed file that can appear as custom options inside it. */
const customOptions: DescExtension[] = file_buf_validate_validate.extensions;

const scalarNames: Partial<Record<Type, string>> = {
  [Type.DOUBLE]: "double",
  [Type.FLOAT]: "float",
  [Type.INT64]: "int64",
  [Type.UINT64]: "uint64",
  [Type.INT32]: "int32",
  [Type.FIXED64]: "fixed64",
  [Type.FIXED32]: "fixed32",
  [Type.BOOL]: "bool",
  [Type.STRING]: "string",
  [Type.BYTES]: "bytes",
  [Type.UINT32]: "uint32",
  [Type.SFIXED32]: "sfixed32",
  [Type.SFIXED64]: "sfixed64",
  [Type.SINT32]: "sint32",
  [Type.SINT64]: "sint64",
};

function quote(s: string): string {
  return JSON.stringify(s);
}

/** A message value in protobuf text format (`{ a: 1 b: "x" }`). */
function textValue(field: DescField, value: unknown): string {
  if (field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")) {
    return textMessage(value as ReflectMessage);
  }
  if (field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum")) {
    const e = field.enum!;
    return e.values.find((v) => v.number === value)?.name ?? String(value);
  }
  if (typeof value === "string") return quote(value);
  return String(value);
}

function textMessage(m: ReflectMessage): string {
  const parts: string[] = [];
  for (const f of m.fields) {
    if (!m.isSet(f)) continue;
    const v = m.get(f) as unknown;
    if (f.fieldKind === "list") {
      for (const item of v as Iterable<unknown>) parts.push(`${f.name}: ${textValue(f, item)}`);
    } else {
      parts.push(`${f.name}: ${textValue(f, v)}`);
    }
  }
  return `{${parts.join(" ")}}`;
}

/** Options as `name = value` strings: set standard fields, then our custom extensions. */
function optionList(options: Message | undefined, schema: DescMessage | undefined): string[] {
  if (!options || !schema) return [];
  const r = reflect(schema, options);
  const list: string[] = [];
  for (const f of r.fields) {
    if (f.name === "uninterpreted_option" || !isFieldSet(options, f)) continue;
    const v = r.get(f) as unknown;
    if (f.fieldKind === "list") {
      for (const item of v as Iterable<unknown>) list.push(`${f.name} = ${textValue(f, item)}`);
    } else {
      list.push(`${f.name} = ${textValue(f, v)}`);
    }
  }
  for (const ext of customOptions) {
    if (ext.extendee.typeName !== schema.typeName || !hasExtension(options, ext)) continue;
    const v = getExtension(options, ext) as unknown;
    if (ext.fieldKind === "message") {
      // One line per set sub-field keeps repeated sub-fields (cel rules) printable.
      const rm = v as Message;
      const sub = reflect(ext.message, rm);
      for (const f of sub.fields) {
        if (!sub.isSet(f)) continue;
        const sv = sub.get(f) as unknown;
        const items = f.fieldKind === "list" ? [...(sv as Iterable<unknown>)] : [sv];
        for (const item of items) list.push(`(${ext.name}).${f.name} = ${textValue(f, item)}`);
      }
    } else {
      list.push(`(${ext.name}) = ${String(v)}`);
    }
  }
  return list;
}

function fieldType(f: FieldDescriptorProto): string {
  const scalar = scalarNames[f.type];
  if (scalar) return scalar;
  return f.typeName.startsWith(".buf.validate.") ? f.typeName.slice(".buf.validate.".length) : f.typeName.slice(1);
}

function printField(f: FieldDescriptorProto, indent: string, inOneof: boolean, schema: DescMessage): string {
  const label = inOneof ? "" : f.label === Label.REPEATED ? "repeated " : f.label === Label.REQUIRED ? "required " : "optional ";
  const opts = optionList(f.options, schema);
  if (f.defaultValue !== "" && f.defaultValue !== undefined && isFieldSet(f, fieldDescProtoField("default_value"))) {
    opts.unshift(`default = ${f.type === Type.STRING ? quote(f.defaultValue) : f.defaultValue}`);
  }
  const optText = opts.length ? ` [\n${opts.map((o) => `${indent}  ${o}`).join(",\n")}\n${indent}]` : "";
  return `${indent}${label}${fieldType(f)} ${f.name} = ${f.number}${optText};`;
}

function fieldDescProtoField(name: string): DescField {
  return fieldOptionsSchema("FieldDescriptorProto").fields.find((x) => x.name === name)!;
}

function fieldOptionsSchema(name: string): DescMessage {
  const desc = file_buf_validate_validate.dependencies
    .flatMap((d) => d.messages)
    .find((m) => m.name === name);
  if (!desc) throw new Error(`descriptor.proto has no ${name}`);
  return desc;
}

function printEnum(e: EnumDescriptorProto, indent: string): string[] {
  const lines = [`${indent}enum ${e.name} {`];
  for (const o of optionList(e.options, fieldOptionsSchema("EnumOptions"))) lines.push(`${indent}  option ${o};`);
  for (const v of e.value) lines.push(`${indent}  ${v.name} = ${v.number};`);
  lines.push(`${indent}}`);
  return lines;
}

function printMessage(m: DescriptorProto, indent: string): string[] {
  const lines = [`${indent}message ${m.name} {`];
  const inner = `${indent}  `;
  for (const o of optionList(m.options, fieldOptionsSchema("MessageOptions"))) lines.push(`${inner}option ${o};`);
  for (const e of m.enumType) lines.push(...printEnum(e, inner));
  for (const n of m.nestedType) lines.push(...printMessage(n, inner));
  const fieldSchema = fieldOptionsSchema("FieldOptions");
  const oneofPrinted = new Set<number>();
  for (const f of m.field) {
    const inRealOneof = f.oneofIndex !== undefined && isFieldSet(f, fieldDescProtoField("oneof_index")) && !f.proto3Optional;
    if (!inRealOneof) {
      lines.push(printField(f, inner, false, fieldSchema));
      continue;
    }
    const idx = f.oneofIndex!;
    if (oneofPrinted.has(idx)) continue;
    oneofPrinted.add(idx);
    const o = m.oneofDecl[idx];
    lines.push(`${inner}oneof ${o.name} {`);
    for (const opt of optionList(o.options, fieldOptionsSchema("OneofOptions"))) lines.push(`${inner}  option ${opt};`);
    for (const of of m.field.filter((x) => x.oneofIndex === idx && isFieldSet(x, fieldDescProtoField("oneof_index")))) {
      lines.push(printField(of, `${inner}  `, true, fieldSchema));
    }
    lines.push(`${inner}}`);
  }
  for (const r of m.extensionRange) lines.push(`${inner}extensions ${r.start} to ${r.end - 1 === 536870911 ? "max" : r.end - 1};`);
  for (const r of m.reservedRange) lines.push(`${inner}reserved ${r.start === r.end - 1 ? r.start : `${r.start} to ${r.end - 1}`};`);
  for (const n of m.reservedName) lines.push(`${inner}reserved ${quote(n)};`);
  lines.push(`${indent}}`);
  return lines;
}

function printFile(p: FileDescriptorProto): string {
  const lines = [
    "// Generated by scripts/extract-third-party.ts from the FileDescriptorProto embedded in",
    "// @bufbuild/protovalidate (Apache-2.0, Copyright Buf Technologies, Inc.). Do not edit.",
    "",
    `syntax = "${p.syntax || "proto2"}";`,
    "",
    `package ${p.package};`,
    "",
  ];
  for (const d of p.dependency) lines.push(`import ${quote(d)};`);
  lines.push("");
  for (const o of optionList(p.options, fieldOptionsSchema("FileOptions"))) lines.push(`option ${o};`);
  lines.push("");
  const fieldSchema = fieldOptionsSchema("FieldOptions");
  const byExtendee = new Map<string, FieldDescriptorProto[]>();
  for (const x of p.extension) byExtendee.set(x.extendee, [...(byExtendee.get(x.extendee) ?? []), x]);
  for (const [extendee, fields] of byExtendee) {
    lines.push(`extend ${extendee.slice(1)} {`);
    for (const f of fields) lines.push(printField(f, "  ", false, fieldSchema));
    lines.push("}", "");
  }
  for (const m of p.messageType) lines.push(...printMessage(m, ""), "");
  for (const e of p.enumType) lines.push(...printEnum(e, ""), "");
  return `${lines.join("\n").trimEnd()}\n`;
}

const validatePath = join(out, "buf/validate/validate.proto");
mkdirSync(dirname(validatePath), { recursive: true });
writeFileSync(validatePath, printFile(file_buf_validate_validate.proto));
console.log("third_party/: grpc reflection v1 + v1alpha, grpc health v1, google/rpc/error_details.proto, buf/validate/validate.proto");
