import { isManualIntegration } from '../../shared/inventory';
import { loadCheckedInventory } from '../integrations';

/** `rotor validate`: exit 0 when the inventory is valid; otherwise every problem, one per line. */
export async function runValidateCommand(options: { file: string }): Promise<number> {
  const inventory = loadCheckedInventory(options.file);
  const count = inventory.integrations.length;
  const manual = inventory.integrations.filter(isManualIntegration).length;
  const providers = new Set(inventory.integrations.map((entry) => entry.provider)).size;
  const manualNote = manual > 0 ? ` (${manual} manual)` : '';
  console.log(`${options.file}: valid, ${count} integration${count === 1 ? '' : 's'}${manualNote} across ${providers} provider${providers === 1 ? '' : 's'}.`);
  return 0;
}
