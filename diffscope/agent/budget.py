"""The limits of one investigation (`AgentBudget`), enforced by the loop and partly by the server.

The tool-call and model-query limits are also the server's own budget: `server_limits()` gives
them as the keyword arguments the entry point passes when it builds or spawns the server.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AgentBudget(BaseModel):
    """Limits of one investigation; `None` means unlimited.

    `max_tool_calls` counts calls sent to the server; `max_model_queries` is read from the
    server's own count (its `diffscope://budget` resource); `max_tokens` counts provider input
    plus output tokens over all requests; `max_turns` counts model replies. After a limit is hit
    the model gets one last request, bounded by `final_s` seconds. `reply_tokens` caps each reply;
    tool results longer than `max_result_chars` are cut; after `max_nudges` replies in a row
    without a tool call the model is asked to submit.
    """

    model_config = ConfigDict(extra="forbid")

    max_tool_calls: int | None = Field(default=30, ge=0)
    max_model_queries: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=500_000, ge=0)
    max_wall_s: float | None = Field(default=900.0, gt=0)
    max_turns: int | None = Field(default=60, ge=0)
    reply_tokens: int = Field(default=4096, ge=1)
    final_s: float = Field(default=120.0, gt=0)
    max_result_chars: int = Field(default=20_000, ge=200)
    max_nudges: int = Field(default=2, ge=0)

    def server_limits(self) -> dict[str, int | None]:
        """The limits the server enforces itself (tool calls, model queries), as keywords."""
        return {"max_tool_calls": self.max_tool_calls, "max_model_queries": self.max_model_queries}
