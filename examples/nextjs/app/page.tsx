import { headers } from "next/headers";
import { redirect } from "next/navigation";

import { getAuth } from "@/lib/auth";

export default async function Home() {
  const requestHeaders = await headers(); // first: it makes the page render per request
  const session = await getAuth().api.getSession({ headers: requestHeaders });
  redirect(session ? "/tasks" : "/sign-in");
}
