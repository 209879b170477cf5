// The workflows the worker registers. Everything in this folder is bundled into Temporal's
// deterministic sandbox: no Node built-ins, no clients, no I/O.
export { rotateKey } from './rotate-key';
export { scheduledRotation } from './scheduled-rotation';
