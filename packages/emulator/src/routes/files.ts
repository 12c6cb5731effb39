/** /v1/files: upload (multipart), list, retrieve, delete, download content. */
import type { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ApiError, badRequest, fileNotFound } from '../errors.js';
import { type EmulatorEnv, type RouteDeps, parseLimit, unknownAfter } from '../http.js';
import { newFileId, nowSeconds } from '../ids.js';
import { idempotencyMiddleware } from '../idempotency.js';
import { serializeFile } from '../serialize.js';
import { UnknownCursorError } from '../store.js';

/** The upload purposes of the spec's CreateFileRequest. */
export const UPLOAD_PURPOSES = ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] as const;
/** Purposes a file can have (uploads, plus the ones the service itself creates). */
const ALL_PURPOSES = new Set<string>([...UPLOAD_PURPOSES, 'assistants_output', 'batch_output', 'fine-tune-results']);

const MIN_EXPIRY = 3600;
const MAX_EXPIRY = 2592000;

function formatList(list: string[]): string {
  const quoted = list.map((p) => `'${p}'`);
  return `${quoted.slice(0, -1).join(', ')}, and ${quoted[quoted.length - 1]}`;
}

export function fileRoutes(app: Hono<EmulatorEnv>, deps: RouteDeps): void {
  const { store, opts } = deps;
  const idempotent = idempotencyMiddleware(store, opts.idempotencyTtlMs);
  // Multipart framing adds a little to the file itself; the precise check on the file size is below.
  const limit = bodyLimit({
    maxSize: opts.maxUploadBytes + 64 * 1024,
    onError: () => {
      throw new ApiError(413, `The file is too large: files may be at most ${opts.maxUploadBytes} bytes.`, 'invalid_request_error', 'file', 'file_too_large');
    },
  });

  app.post('/v1/files', limit, idempotent, async (c) => {
    const type = c.req.header('content-type') ?? '';
    if (!/^multipart\/form-data/i.test(type)) {
      throw badRequest("The request must be sent as multipart/form-data with the fields 'file' and 'purpose'.", 'file', 'invalid_content_type');
    }
    let form: Record<string, string | File | (string | File)[]>;
    try {
      form = await c.req.parseBody({ all: true });
    } catch {
      throw badRequest('The request body could not be parsed as multipart/form-data.', 'file', 'invalid_body');
    }
    const single = (name: string) => {
      const v = form[name];
      if (Array.isArray(v)) throw badRequest(`'${name}' may be given only once.`, name, 'invalid_value');
      return v;
    };

    const purpose = single('purpose');
    if (purpose === undefined) throw badRequest("Missing required parameter: 'purpose'.", 'purpose', 'missing_required_parameter');
    if (typeof purpose !== 'string' || !(UPLOAD_PURPOSES as readonly string[]).includes(purpose)) {
      throw badRequest(
        `Invalid value: '${typeof purpose === 'string' ? purpose : '[file]'}'. Supported values are: ${formatList([...UPLOAD_PURPOSES])}.`,
        'purpose',
        'invalid_value',
      );
    }
    const file = single('file');
    if (file === undefined) throw badRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
    if (typeof file === 'string') throw badRequest("'file' must be a file upload, not a text field.", 'file', 'invalid_type');
    const filename = file.name || 'upload';
    if (purpose === 'fine-tune' && !filename.toLowerCase().endsWith('.jsonl')) {
      throw badRequest('Invalid file format for Fine-Tuning API. Must be .jsonl', 'file', 'invalid_file_format');
    }
    if (file.size > opts.maxUploadBytes) {
      throw new ApiError(413, `The file is too large: files may be at most ${opts.maxUploadBytes} bytes.`, 'invalid_request_error', 'file', 'file_too_large');
    }
    if (file.size === 0) throw badRequest('The file is empty.', 'file', 'empty_file');

    const now = nowSeconds();
    let expiresAt: number | null = null;
    const anchor = single('expires_after[anchor]');
    const seconds = single('expires_after[seconds]');
    if (anchor !== undefined || seconds !== undefined) {
      if (anchor !== 'created_at') {
        throw badRequest("Invalid value for 'expires_after[anchor]': expected 'created_at'.", 'expires_after.anchor', 'invalid_value');
      }
      const n = typeof seconds === 'string' && /^\d+$/.test(seconds) ? Number(seconds) : NaN;
      if (!Number.isInteger(n) || n < MIN_EXPIRY || n > MAX_EXPIRY) {
        throw badRequest(
          `Invalid 'expires_after[seconds]': expected an integer between ${MIN_EXPIRY} and ${MAX_EXPIRY}.`,
          'expires_after.seconds',
          'invalid_value',
        );
      }
      expiresAt = now + n;
    }

    const content = Buffer.from(await file.arrayBuffer());
    const row = {
      id: newFileId(),
      org_id: c.get('orgId'),
      filename,
      purpose,
      bytes: content.length,
      created_at: now,
      expires_at: expiresAt,
    };
    store.insertFile(row, content);
    return c.json(serializeFile(row));
  });

  app.get('/v1/files', (c) => {
    const purpose = c.req.query('purpose');
    if (purpose !== undefined && !ALL_PURPOSES.has(purpose)) {
      throw badRequest(`Invalid value: '${purpose}'. Supported values are: ${formatList([...ALL_PURPOSES])}.`, 'purpose', 'invalid_value');
    }
    const order = c.req.query('order') ?? 'desc';
    if (order !== 'asc' && order !== 'desc') {
      throw badRequest(`Invalid value: '${order}'. Supported values are: 'asc' and 'desc'.`, 'order', 'invalid_value');
    }
    const limit = parseLimit(c.req.query('limit'), 10000, 10000);
    const after = c.req.query('after');
    try {
      const page = store.listFiles(c.get('orgId'), { purpose, after, limit, order, now: nowSeconds() });
      const data = page.items.map(serializeFile);
      return c.json({
        object: 'list',
        data,
        first_id: data[0]?.id ?? null,
        last_id: data[data.length - 1]?.id ?? null,
        has_more: page.hasMore,
      });
    } catch (err) {
      if (err instanceof UnknownCursorError) throw unknownAfter(err.after, 'file');
      throw err;
    }
  });

  app.get('/v1/files/:id', (c) => {
    const id = c.req.param('id');
    const file = store.getFile(c.get('orgId'), id, nowSeconds());
    if (!file) throw fileNotFound(id);
    return c.json(serializeFile(file));
  });

  app.delete('/v1/files/:id', (c) => {
    const id = c.req.param('id');
    const orgId = c.get('orgId');
    if (!store.getFile(orgId, id, nowSeconds()) || !store.deleteFile(orgId, id)) throw fileNotFound(id);
    return c.json({ id, object: 'file' as const, deleted: true });
  });

  app.get('/v1/files/:id/content', (c) => {
    const id = c.req.param('id');
    const orgId = c.get('orgId');
    const file = store.getFile(orgId, id, nowSeconds());
    const content = file ? store.getFileContent(orgId, id) : null;
    if (!file || content == null) throw fileNotFound(id);
    const type = file.filename.endsWith('.csv')
      ? 'text/csv; charset=utf-8'
      : file.filename.endsWith('.jsonl')
        ? 'application/jsonl'
        : 'application/octet-stream';
    return c.body(new Uint8Array(content), 200, {
      'content-type': type,
      'content-disposition': `attachment; filename="${file.filename.replace(/["\\\r\n]/g, '_')}"`,
    });
  });
}
