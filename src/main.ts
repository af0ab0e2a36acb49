/** Process entry (`npm start`, dist/main.js): this process is the server. */
import { serve } from "./serve.js";

await serve();
