import { Runtime, makeTelemetryFilterString, type LogLevel, type LogMetadata, type Logger as TemporalLogger } from '@temporalio/worker';
import type { Logger } from '../shared/logger';

const pinoLevels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

const activityOnlyWorkerWarning = 'No workflows registered, not polling for workflow tasks';

/**
 * Passes the Temporal SDK's log calls (worker, workflow through its sink, activity context and
 * the Rust core) to pino, so everything the worker process logs is one JSON stream with one
 * redaction list.
 */
export class PinoTemporalLogger implements TemporalLogger {
  constructor(private readonly logger: Logger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    // Each provider task queue has a worker for activities only, by design, and the SDK warns
    // about every one of them at start.
    const expected = level === 'WARN' && message === activityOnlyWorkerWarning;
    this.logger[expected ? 'debug' : pinoLevels[level]](toFields(meta), message);
  }

  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }

  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }

  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }

  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }

  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}

/**
 * Installs the Temporal runtime with Rotor's logger. Must run before the first connection is
 * made, once per process. Shutdown signals are left to the worker's own handlers.
 */
export function installTemporalRuntime(logger: Logger): void {
  Runtime.install({
    logger: new PinoTemporalLogger(logger),
    shutdownSignals: [],
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: 'WARN', other: 'ERROR' }), forward: {} },
    },
  });
}

// Temporal's metadata uses camelCase keys such as workflowId and activityType; pino prints them as is.
function toFields(meta?: LogMetadata): Record<string, unknown> {
  if (!meta) {
    return {};
  }
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(meta)) {
    fields[key] = value;
  }
  return fields;
}
