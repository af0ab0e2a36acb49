/**
 * OpenTelemetry tracing: one SERVER span per RPC, a child of the caller's
 * W3C `traceparent` when it sends one, exported over OTLP/HTTP. Off unless an
 * endpoint is configured (FORMSTATE_OTLP_ENDPOINT or the standard
 * OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT): then no tracer exists and the
 * interceptor is not in the chain, so an untraced server pays nothing.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, type TextMapGetter, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { BasicTracerProvider, BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { protocolOf } from "./metrics.js";

/** A tracer and how to flush it at shutdown. */
export interface Tracing {
  tracer: Tracer;
  shutdown(): Promise<void>;
}

/** Tracing through the given span processors (tests pass an in-memory exporter's). */
export function tracingWith(spanProcessors: SpanProcessor[]): Tracing {
  const provider = new BasicTracerProvider({ spanProcessors });
  return { tracer: provider.getTracer("formstate"), shutdown: () => provider.shutdown() };
}

/** Tracing to an OTLP/HTTP collector (`…/v1/traces`), batched so a slow collector never delays a call. */
export function otlpTracing(tracesUrl: string): Tracing {
  return tracingWith([new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl }))]);
}

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => {
    const keys: string[] = [];
    h.forEach((_, k) => keys.push(k));
    return keys;
  },
  get: (h, key) => h.get(key) ?? undefined,
};

const rpcSystem = (protocol: string) => (protocol === "connect" ? "connect_rpc" : "grpc");

/** One span per call, named `package.Service/Method` as the RPC semantic conventions say. */
export function createTracingInterceptor(tracer: Tracer): Interceptor {
  const propagator = new W3CTraceContextPropagator();
  return (next) => async (req) => {
    const parent = propagator.extract(ROOT_CONTEXT, req.header, headerGetter);
    const span = tracer.startSpan(
      `${req.method.parent.typeName}/${req.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": rpcSystem(protocolOf(req.header.get("content-type"))),
          "rpc.service": req.method.parent.typeName,
          "rpc.method": req.method.name,
        },
      },
      parent,
    );
    try {
      const res = await next(req);
      span.setAttribute("rpc.grpc.status_code", 0); // OK
      return res;
    } catch (err) {
      const e = ConnectError.from(err);
      span.setAttribute("rpc.grpc.status_code", e.code);
      // Caller mistakes are not server errors; only what the server failed at marks the span.
      if ([Code.Internal, Code.Unknown, Code.Unavailable, Code.DataLoss, Code.DeadlineExceeded].includes(e.code)) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: Code[e.code] });
      }
      throw err;
    } finally {
      span.end();
    }
  };
}
