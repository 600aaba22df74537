// Next.js calls `register` once when the server starts; the work is in lib/startup.ts, which
// needs Node.js (SQLite, process.exit).

export async function register() {
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { startUp } = await import("./lib/startup");
    await startUp();
  }
}
