/** The reproduction suites by name, in the order `--suite all` runs them. */
import type { Suite } from "../suite.ts";
import { defaultMoeSuite } from "./default_moe.ts";
import { grinSuite } from "./grin.ts";
import { balanceSuite } from "./balance.ts";
import { bamSuite } from "./bam.ts";

export const SUITES: readonly Suite[] = [defaultMoeSuite, grinSuite, balanceSuite, bamSuite];

/**
 * The suite named `name`, or undefined.
 *
 * @example
 * ```ts
 * suiteByName("grin")?.title;
 * ```
 */
export function suiteByName(name: string): Suite | undefined {
  return SUITES.find((s) => s.name === name);
}

export { balanceSuite, bamSuite, defaultMoeSuite, grinSuite };
