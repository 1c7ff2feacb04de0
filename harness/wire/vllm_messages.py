"""vLLM's chat message union, as its request model validates `messages` (so a refused message gets the real
server's errors, one per branch of the union, in its order and words).

vLLM 0.32 (renderers/chat_utils.py, `ChatCompletionMessageParam`) types `messages` as the `openai` package's six
message TypedDicts, then its own `CustomChatCompletionMessageParam`, then openai_harmony's `Message`. The openai
TypedDicts are imported from the `openai` package (the version vLLM 0.32 ships with, 3.60); vLLM's own TypedDicts are
written out here as vLLM defines them; harmony's `Message` is its pydantic model's fields (a Rust extension
package is not needed for them). Pure data: no web framework here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, List, Literal, Optional, TypeAlias, Union

from openai.types.chat import (
    ChatCompletionContentPartImageParam,
    ChatCompletionContentPartInputAudioParam,
    ChatCompletionContentPartRefusalParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageToolCallParam,
)
from openai.types.chat import ChatCompletionContentPartParam as OpenAIChatCompletionContentPartParam
from openai.types.chat import ChatCompletionMessageParam as OpenAIChatCompletionMessageParam
from openai.types.responses import ResponseInputImageParam
from pydantic import BaseModel, ConfigDict, TypeAdapter
from typing_extensions import Required, TypedDict


class AudioURL(TypedDict, total=False):
    url: Required[str]


class ChatCompletionContentPartAudioParam(TypedDict, total=False):
    audio_url: Required[AudioURL]
    type: Required[Literal["audio_url"]]


MultiModalEmbedsPayload: TypeAlias = Union[str, dict[str, Union[str, list[Union[int, float]]]]]


class ChatCompletionContentPartImageEmbedsParam(TypedDict, total=False):
    image_embeds: Optional[MultiModalEmbedsPayload]
    type: Required[Literal["image_embeds"]]
    uuid: Optional[str]


class ChatCompletionContentPartAudioEmbedsParam(TypedDict, total=False):
    audio_embeds: Optional[MultiModalEmbedsPayload]
    type: Required[Literal["audio_embeds"]]
    uuid: Optional[str]


class ChatCompletionContentPartVideoEmbedsParam(TypedDict, total=False):
    video_embeds: Optional[MultiModalEmbedsPayload]
    type: Required[Literal["video_embeds"]]
    uuid: Optional[str]


class ChatCompletionContentPartPromptEmbedsParam(TypedDict, total=False):
    data: Required[str]
    type: Required[Literal["prompt_embeds"]]


class VideoURL(TypedDict, total=False):
    url: Required[str]


class ChatCompletionContentPartVideoParam(TypedDict, total=False):
    video_url: Required[VideoURL]
    type: Required[Literal["video_url"]]


class Image:
    """(PIL's image class, by name: nothing sent as JSON is one)"""


class PILImage(BaseModel):
    image_pil: Image
    model_config = ConfigDict(arbitrary_types_allowed=True)


class CustomChatCompletionContentPILImageParam(TypedDict, total=False):
    image_pil: Optional[PILImage]
    uuid: Optional[str]


class CustomChatCompletionContentSimpleImageParam(TypedDict, total=False):
    image_url: Optional[str]
    uuid: Optional[str]


class CustomChatCompletionContentSimpleAudioParam(TypedDict, total=False):
    audio_url: Optional[str]


class CustomChatCompletionContentSimpleVideoParam(TypedDict, total=False):
    video_url: Optional[str]
    uuid: Optional[str]


class CustomThinkCompletionContentParam(TypedDict, total=False):
    thinking: Required[str]
    closed: bool
    type: Required[Literal["thinking"]]


class CustomChatCompletionContentToolReferenceParam(TypedDict, total=False):
    name: str
    type: Literal["tool_reference"]


ChatCompletionContentPartParam: TypeAlias = Union[
    OpenAIChatCompletionContentPartParam, ChatCompletionContentPartAudioParam, ChatCompletionContentPartInputAudioParam,
    ChatCompletionContentPartVideoParam, ChatCompletionContentPartRefusalParam, CustomChatCompletionContentPILImageParam,
    CustomChatCompletionContentSimpleImageParam, ChatCompletionContentPartImageEmbedsParam,
    ChatCompletionContentPartAudioEmbedsParam, ChatCompletionContentPartVideoEmbedsParam,
    ChatCompletionContentPartPromptEmbedsParam, CustomChatCompletionContentSimpleAudioParam,
    CustomChatCompletionContentSimpleVideoParam, CustomChatCompletionContentToolReferenceParam, str,
    CustomThinkCompletionContentParam]


class CustomChatCompletionMessageParam(TypedDict, total=False):
    role: Required[str]
    content: Union[str, list[ChatCompletionContentPartParam]]
    name: str
    tool_call_id: Optional[str]
    tool_calls: Optional[list[ChatCompletionMessageToolCallParam]]
    reasoning: Optional[str]
    tools: Optional[list[ChatCompletionFunctionToolParam]]
    task: Optional[str]


class Role(str, Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    DEVELOPER = "developer"
    TOOL = "tool"


class Author(BaseModel):
    role: Role
    name: Optional[str] = None


class Content(BaseModel):
    pass


class Message(BaseModel):
    """openai_harmony's Message (its fields)."""

    author: Author
    content: List[Content] = []
    channel: Optional[str] = None
    recipient: Optional[str] = None
    content_type: Optional[str] = None


ChatCompletionMessageParam: TypeAlias = Union[OpenAIChatCompletionMessageParam, CustomChatCompletionMessageParam,
                                              Message]


def materialize_tool_calls(messages: list[Any]) -> None:
    """ChatCompletionRequest's after-validator: each message's tool_calls, validated lazily as an iterable by the
    openai branch, are read into a list (their errors raised here, told from the iterator: `body.0.<branch>.id`)."""
    for msg in messages:
        if isinstance(msg, dict):
            tool_calls = msg.get("tool_calls")
            if tool_calls is not None and not isinstance(tool_calls, list):
                msg["tool_calls"] = list(tool_calls)


# the parts vLLM reads through a TypeAdapter of their own type when it renders the chat (MM_PARSER_MAP); the others
# it casts, unchecked
PART_PARSERS = {
    "image_url": TypeAdapter(ChatCompletionContentPartImageParam).validate_python,
    "audio_url": TypeAdapter(ChatCompletionContentPartAudioParam).validate_python,
    "video_url": TypeAdapter(ChatCompletionContentPartVideoParam).validate_python,
    "input_image": TypeAdapter(ResponseInputImageParam).validate_python,
}
