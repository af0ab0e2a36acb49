/** The `member` table: a user's role in a project. */
export interface MemberTable {
  project_id: string;
  user_id: string;
  /** admin, developer or user. */
  role: string;
  create_time: number;
  update_time: number;
}

export const memberTable = "member";
