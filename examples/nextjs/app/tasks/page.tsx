import { headers } from "next/headers";
import { redirect } from "next/navigation";

import { TaskBoard } from "@/components/TaskBoard";
import { getAuth } from "@/lib/auth";
import { serverConfig } from "@/lib/config";

export default async function TasksPage() {
  const requestHeaders = await headers(); // first: it makes the page render per request
  const session = await getAuth().api.getSession({ headers: requestHeaders });
  if (!session) redirect("/sign-in");
  // Read at request time, so one build serves any gateway address.
  const { gatewayUrl } = serverConfig();
  return <TaskBoard userId={session.user.id} userName={session.user.name} gatewayUrl={gatewayUrl} />;
}
