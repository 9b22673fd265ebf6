/** The stop of a run on request (Ctrl-C): not a failure, the run resumes from its checkpoint. */

/** Thrown when a run was stopped on request; its checkpoint holds the progress. */
export class RunInterrupted extends Error {
  constructor(id: string, step?: number) {
    super(
      `run ${id} stopped${
        step !== undefined ? ` at step ${step}` : ""
      }; it resumes from its checkpoint`,
    );
    this.name = "RunInterrupted";
  }
}
