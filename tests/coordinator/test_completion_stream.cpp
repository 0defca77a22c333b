// tests/coordinator/test_completion_stream.cpp — the stream stage (CompletionJob) on a recording Exchange: one
// SSE chunk per sampled token, sent when the token arrives, also while its text is held back (half a UTF-8
// character, a possible stop-string prefix, a special token). A byte-level tokenizer the test writes itself
// (ids 0..255 are the bytes, 256 is <|im_end|>), so no model is needed.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "coordinator/http/server.h"
#include "coordinator/request.h"
#include "coordinator/stream/completion_stream.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "tests/coordinator/byte_tokenizer.h"

namespace tessera::coordinator::stream {
namespace {

using nlohmann::json;

constexpr int32_t kImEnd = 256;
const std::string kPlus = "\xEF\xBC\x8B";  // U+FF0B FULLWIDTH PLUS SIGN: three byte tokens, one character

tokenizer::Tokenizer load_byte_tokenizer() {
  return test_support::make_byte_tokenizer("stream", {{kImEnd, "<|im_end|>"}});
}

// Records what the job hands the HTTP layer, in order.
class RecordingExchange final : public http::Exchange {
 public:
  void respond(http::HttpResponse r) override { body = r.body; }
  void start_stream(int, std::string, http::Headers) override { started = true; }
  void write(std::string chunk) override { writes.push_back(std::move(chunk)); }
  void end() override { ended = true; }
  void on_disconnect(std::function<void()>) override {}
  bool disconnected() const override { return false; }

  // The JSON payloads of the SSE events written so far ("[DONE]" excluded); consumes them.
  std::vector<json> take_events() {
    std::vector<json> out;
    for (const std::string& w : writes) {
      EXPECT_EQ(w.rfind("data: ", 0), 0u) << w;
      EXPECT_EQ(w.substr(w.size() - 2), "\n\n") << w;
      const std::string data = w.substr(6, w.size() - 8);
      if (data != "[DONE]") out.push_back(json::parse(data));
    }
    writes.clear();
    return out;
  }

  bool started = false, ended = false;
  std::string body;
  std::vector<std::string> writes;
};

struct Fixture {
  explicit Fixture(JobOptions o) {
    o.id = "cmpl-test";
    o.model = "m";
    if (o.prompt_tokens.empty()) o.prompt_tokens = {3};
    job = std::make_shared<CompletionJob>(std::move(o), &tok, ex, JobHooks{});
    job->begin();
  }
  // Pushes one token and returns the events it produced at once.
  std::vector<json> token(int32_t id) {
    job->on_token(0, TokenEvent{0, id, 0.0f, {}});
    return ex->take_events();
  }
  std::vector<json> token_bytes(const std::string& s) {
    std::vector<json> all;
    for (char c : s)
      for (json& e : token(static_cast<uint8_t>(c))) all.push_back(std::move(e));
    return all;
  }

  tokenizer::Tokenizer tok = load_byte_tokenizer();
  std::shared_ptr<RecordingExchange> ex = std::make_shared<RecordingExchange>();
  std::shared_ptr<CompletionJob> job;
};

JobOptions completions_stream() {
  JobOptions o;
  o.stream = true;
  return o;
}

TEST(CompletionStream, OneChunkPerTokenWhileAUtf8CharacterIsHeldBack) {
  Fixture f(completions_stream());
  auto a = f.token('a');
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0]["choices"][0]["text"], "a");
  EXPECT_TRUE(a[0]["choices"][0]["finish_reason"].is_null());
  // The first two bytes of a three-byte character: a chunk each, with no text yet (never half a character).
  for (char byte : kPlus.substr(0, 2)) {
    auto held = f.token(static_cast<uint8_t>(byte));
    ASSERT_EQ(held.size(), 1u) << "a token whose text is held back must still leave in its own chunk";
    EXPECT_EQ(held[0]["choices"][0]["text"], "");
    EXPECT_TRUE(held[0]["choices"][0]["finish_reason"].is_null());
  }
  auto whole = f.token(static_cast<uint8_t>(kPlus[2]));
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0]["choices"][0]["text"], kPlus);
  // A special token decodes to nothing and still gets its chunk.
  auto special = f.token(kImEnd);
  ASSERT_EQ(special.size(), 1u);
  EXPECT_EQ(special[0]["choices"][0]["text"], "");

  f.job->on_finish(0, 0, FinishReason::kLength, "");
  auto tail = f.ex->take_events();
  ASSERT_EQ(tail.size(), 1u);  // the finish chunk (no usage asked), then [DONE]
  EXPECT_EQ(tail[0]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(f.ex->ended);
}

TEST(CompletionStream, ChunkCountEqualsTokenCountAndTextIsUnchanged) {
  JobOptions o = completions_stream();
  o.include_usage = true;
  Fixture f(std::move(o));
  const std::string text = "x " + kPlus + kPlus + "\xF0\x9F\x98\x80 ok";  // ASCII, 3-byte and 4-byte characters
  const auto events = f.token_bytes(text);
  ASSERT_EQ(events.size(), text.size());  // one chunk per token, whatever the characters
  std::string joined;
  for (const json& e : events) joined += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(joined, text);
  f.job->on_finish(0, 0, FinishReason::kLength, "");
  const auto tail = f.ex->take_events();
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[1]["usage"]["completion_tokens"], static_cast<int64_t>(text.size()));
}

TEST(CompletionStream, ChatDeltasAndStopStringPrefixesStillGetAChunkPerToken) {
  JobOptions o = completions_stream();
  o.chat = true;
  o.stop = {"END"};
  Fixture f(std::move(o));
  auto role = f.ex->take_events();  // begin(): the role chunk
  ASSERT_EQ(role.size(), 1u);
  EXPECT_EQ(role[0]["choices"][0]["delta"]["role"], "assistant");
  // "E" and "N" might start the stop string: held, but each token has its chunk ({"content": ""}).
  const std::vector<std::string> want = {"h", "i", "", "", "EN!"};
  const auto events = f.token_bytes("hiEN!");
  ASSERT_EQ(events.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(events[i]["choices"][0]["delta"]["content"], want[i]) << i;
  // The stop string completes: that token's chunk carries finish_reason "stop" and no text.
  const auto stop = f.token_bytes("END");
  ASSERT_EQ(stop.size(), 3u);
  EXPECT_EQ(stop[2]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(stop[2]["choices"][0]["delta"], json::object());
  // The scheduler answers that token's kStop verdict with on_finish(kStop) in the same step, after counting the
  // request: only then does the stream end (a client reading /metrics after [DONE] finds it counted).
  EXPECT_FALSE(f.ex->ended);
  EXPECT_TRUE(f.token('z').empty());  // nothing after the stop
  f.job->on_finish(0, 0, FinishReason::kStop, "");
  for (const json& e : f.ex->take_events())  // no second finish chunk: the stop chunk above was the choice's last
    EXPECT_FALSE(e.contains("choices") && !e["choices"].empty()) << e.dump();
  EXPECT_TRUE(f.ex->ended);
}

TEST(CompletionStream, NonStreamingAnswerIsOneBody) {
  JobOptions o;
  Fixture f(std::move(o));
  EXPECT_TRUE(f.token_bytes("a" + kPlus).empty());
  f.job->on_finish(0, 0, FinishReason::kLength, "");
  EXPECT_FALSE(f.ex->started);
  const json j = json::parse(f.ex->body);
  EXPECT_EQ(j["choices"][0]["text"], "a" + kPlus);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
}

// min_tokens: a stop string in the text of the first min_tokens tokens does not end the answer; a later one does.
TEST(CompletionStream, StopStringsWaitForMinTokens) {
  JobOptions o;
  o.stop = {"b"};
  o.min_tokens = 3;
  Fixture f(std::move(o));
  std::vector<bool> stops;
  for (char c : std::string("abab"))
    stops.push_back(f.job->on_token(0, TokenEvent{0, static_cast<uint8_t>(c), 0.0f, {}}) == TokenVerdict::kStop);
  EXPECT_EQ(stops, (std::vector<bool>{false, false, false, true}));
  f.job->on_finish(0, 0, FinishReason::kStop, "");
  const json j = json::parse(f.ex->body);
  EXPECT_EQ(j["choices"][0]["text"], "aba");  // the 'b' at token 2 stays, the one at token 4 stops it
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

// stop_token_ids: the token ends the sequence (the scheduler's call) and, like EOS, adds no text.
TEST(CompletionStream, StopTokenIdsAddNoText) {
  JobOptions o;
  o.stop_token_ids = {'!'};
  Fixture f(std::move(o));
  for (char c : std::string("hi!")) f.job->on_token(0, TokenEvent{0, static_cast<uint8_t>(c), 0.0f, {}});
  f.job->on_finish(0, 0, FinishReason::kStop, "");
  const json j = json::parse(f.ex->body);
  EXPECT_EQ(j["choices"][0]["text"], "hi");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
}

}  // namespace
}  // namespace tessera::coordinator::stream
