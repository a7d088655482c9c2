// The operator's admin endpoints under /admin/ (http.ts has checked the operator token): JSON bodies
// checked with valibot, JSON answers, and refusals as one-line text naming what to do.
import { RefusedError } from "../errors.ts";
import * as v from "valibot";
import { issueText } from "../validate.ts";
import { AdminError, MAX_TOKEN_TTL_MS, MIN_TOKEN_TTL_MS, type Admin, type Operator } from "./admin.ts";

/** Admin request bodies are a few fields; anything longer is refused before it is parsed. */
export const MAX_ADMIN_BODY = 4096;
const DEFAULT_TOKEN_TTL_SEC = 86_400;

const operatorName = v.optional(
  v.pipe(v.string(), v.maxLength(128), v.regex(/^[^\x00-\x1f\x7f]*$/, "must not contain control characters")),
);
const RemoveHost = v.strictObject({
  host: v.pipe(v.string(), v.minLength(1), v.maxLength(300)),
  operator: operatorName,
});
const NewToken = v.strictObject({
  ttlSec: v.optional(
    v.pipe(v.number(), v.integer(), v.minValue(MIN_TOKEN_TTL_MS / 1000), v.maxValue(MAX_TOKEN_TTL_MS / 1000)),
  ),
  operator: operatorName,
});

export async function adminRoute(req: Request, url: URL, admin: Admin, addr: string): Promise<Response> {
  const wrong = (method: string) =>
    req.method === method ? undefined : text(405, `use ${method} for ${url.pathname}`);
  try {
    switch (url.pathname) {
      case "/admin/sessions":
        return wrong("GET") ?? json({ sessions: await admin.allSessions() });
      case "/admin/hosts":
        return wrong("GET") ?? json({ hosts: await admin.hosts(url.searchParams.get("all") === "1") });
      case "/admin/hosts/remove": {
        const body = wrong("POST") ?? (await readBody(req, RemoveHost));
        if (body instanceof Response) return body;
        return json({ removed: await admin.removeHost(body.host, who(body.operator, addr)) });
      }
      case "/admin/enroll-tokens": {
        const body = wrong("POST") ?? (await readBody(req, NewToken));
        if (body instanceof Response) return body;
        return json(
          await admin.enrollToken((body.ttlSec ?? DEFAULT_TOKEN_TTL_SEC) * 1000, who(body.operator, addr)),
          201,
        );
      }
      default:
        return text(
          404,
          `no admin endpoint ${url.pathname}; this coordinator has /admin/sessions, /admin/hosts, /admin/hosts/remove and /admin/enroll-tokens`,
        );
    }
  } catch (err) {
    if (err instanceof AdminError) return text(err.status, err.message);
    // The audit disk is full: the action needs a line it cannot have now; the operator reads why.
    if (err instanceof RefusedError && err.code === "audit_full") return text(503, err.message);
    throw err;
  }
}

function who(name: string | undefined, addr: string): Operator {
  return name ? { name, addr } : { addr };
}

async function readBody<S extends v.GenericSchema>(req: Request, schema: S): Promise<v.InferOutput<S> | Response> {
  if (Number(req.headers.get("content-length") ?? 0) > MAX_ADMIN_BODY)
    return text(413, `request body over ${MAX_ADMIN_BODY} bytes`);
  const raw = await req.text();
  if (raw.length > MAX_ADMIN_BODY) return text(413, `request body over ${MAX_ADMIN_BODY} bytes`);
  let data: unknown;
  try {
    data = JSON.parse(raw || "{}");
  } catch {
    return text(400, "request body is not valid JSON");
  }
  const r = v.safeParse(schema, data);
  return r.success ? r.output : text(400, `invalid request body${issueText(r.issues)}`);
}

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store" } });
}

export function text(status: number, body: string): Response {
  return new Response(`${body}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}
