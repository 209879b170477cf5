import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Field paths pino replaces with "[redacted]" in every log line. Rotor passes references, not
 * secrets, between its parts. This list is the second line of defence for a value that slips
 * into a log object anyway (an error's request config, a provider response).
 */
export const REDACTED_PATHS = [
  'secret',
  'token',
  'password',
  'passphrase',
  'apiKey',
  'secretId',
  'secretAccessKey',
  'secret_access_key',
  'sessionToken',
  'authorization',
  '*.secret',
  '*.token',
  '*.password',
  '*.passphrase',
  '*.apiKey',
  '*.secretId',
  '*.secretAccessKey',
  '*.secret_access_key',
  '*.sessionToken',
  '*.authorization',
  '*.Authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
  '*.headers["x-vault-token"]',
  '*.headers["X-Vault-Token"]',
];

export interface LoggerOptions {
  level?: string;
  /** Destination of the log lines; standard output when absent. Tests pass a stream to capture them. */
  destination?: DestinationStream;
  /** Fields added to every line, such as `{ component: 'worker' }`. */
  bindings?: Record<string, unknown>;
}

/** Creates Rotor's structured JSON logger with redaction configured. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const logger = pino(
    {
      level: options.level ?? 'info',
      base: { service: 'rotor' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Temporal's log metadata puts errors under `error`; serialise them like pino's own `err`.
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    options.destination,
  );
  return options.bindings ? logger.child(options.bindings) : logger;
}
