import { loadCheckedInventory } from '../integrations';

/** `rotor validate`: exit 0 when the inventory is valid; otherwise every problem, one per line. */
export async function runValidateCommand(options: { file: string }): Promise<number> {
  const inventory = loadCheckedInventory(options.file);
  console.log(`${options.file}: valid, ${inventory.integrations.length} integration${inventory.integrations.length === 1 ? '' : 's'}.`);
  return 0;
}
