// Run names by `entity/project/run_id`, for pages that name runs they only have the paths of
// (artifact versions' creators and users). Each run is asked for once; until it answers, or if
// it cannot be read (deleted, another entity's), its id stands for its name.

import { api } from "./api";
import { parseRunPath } from "./artifacts";

class RunNames {
  #names: Record<string, string> = $state({});
  #asked = new Map<string, Promise<string | null>>();

  /** The run's name, reactively: its id until the name is read. */
  get(path: string): string {
    this.load(path);
    return this.#names[path] ?? parseRunPath(path)?.runId ?? path;
  }

  /** Reads the name (once per run): null when it cannot be. */
  load(path: string): Promise<string | null> {
    let asked = this.#asked.get(path);
    if (!asked) {
      const run = parseRunPath(path);
      asked = run
        ? api.run(run.entity, run.project, run.runId).then(
            (info) => ((this.#names[path] = info.name), info.name),
            () => null,
          )
        : Promise.resolve(null);
      this.#asked.set(path, asked);
    }
    return asked;
  }
}

export const runNames = new RunNames();
