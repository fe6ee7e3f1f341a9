"""Prompts as users' trainers build them: chat templates, every generation-config stop id, the
checkpoint's dtype kept on save, and user reward functions for prompt-file tasks (all offline, tiny models
built in code)."""

import json
import pickle

import pytest
import torch
import transformers
from safetensors import safe_open

from llm_rl.config import DataConfig, OptimConfig, RolloutConfig, TrainConfig
from llm_rl.model import build_default_policy, checkpoint_dtype, load_policy, save_policy
from llm_rl.rollout import encode_prompts, generate, stop_token_ids
from llm_rl.tasks import make_task
from llm_rl.tasks.base import ChatPrompt, Problem, chat_template_text
from llm_rl.tasks.prompt_file import load_prompt_file, load_reward_fn
from llm_rl.tokenizer import build_char_tokenizer
from llm_rl.trainer import Trainer

transformers.utils.logging.disable_progress_bar()
SIZES = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
             max_positions=64)
#: a tiny Jinja chat template using only characters of the character tokenizer's alphabet
TEMPLATE = ("{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }};{% endfor %}"
            "{% if add_generation_prompt %}a:{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1+1?"}]


def rows(n=6):
    """verl-layout rows whose prompts are chat messages."""
    return [{"data_source": "toy", "prompt": [{"role": "user", "content": f"What is {i}+{i}?"}],
             "reward_model": {"style": "rule", "ground_truth": str(2 * i)}} for i in range(n)]


def write_jsonl(path, rs):
    path.write_text("".join(json.dumps(r) + "\n" for r in rs))
    return str(path)


def ids_of(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------------------------------
# chat templates
# ------------------------------------------------------------------------------------------------

def test_chat_prompt_is_the_joined_string_and_keeps_its_messages():
    p = ChatPrompt(MESSAGES)
    assert p == "Be brief.\nWhat is 1+1?" and hash(p) == hash("Be brief.\nWhat is 1+1?")
    assert p.messages == MESSAGES and p.messages is not p.messages  # copies
    q = pickle.loads(pickle.dumps(p))
    assert type(q) is ChatPrompt and q.messages == MESSAGES
    for bad in ([], [{"role": "user"}], ["hi"], [{"role": 1, "content": "x"}], "text"):
        with pytest.raises(ValueError, match="chat messages"):
            ChatPrompt(bad)


def test_chat_template_renders_messages_without_bos():
    tok = build_char_tokenizer()
    p = ChatPrompt(MESSAGES)
    assert chat_template_text(tok, p) is None  # no template: caller joins with newlines
    ids, _ = encode_prompts(tok, [p])
    assert ids[0].tolist() == [tok.bos_token_id] + ids_of(tok, str(p))  # today's behaviour kept
    tok.chat_template = TEMPLATE
    rendered = "s:Be brief.;u:What is 1+1?;a:"
    assert chat_template_text(tok, p) == rendered
    ids, mask = encode_prompts(tok, [p, "7+8="])
    n = len(ids_of(tok, rendered))
    assert ids[0, -n:].tolist() == ids_of(tok, rendered) and int(mask[0].sum()) == n  # template, no bos
    assert ids[1, -5:].tolist() == ids_of(tok, "<bos>7+8=") and int(mask[1].sum()) == 5  # plain str: bos
    assert chat_template_text(tok, "7+8=") is None
    tok.chat_template = "{{ bos_token }}" + TEMPLATE  # a template that adds bos itself: exactly one
    ids, mask = encode_prompts(tok, [p])
    assert ids[0].tolist().count(tok.bos_token_id) == 1 and ids[0, 0] == tok.bos_token_id


def test_chat_template_failure_names_the_prompt():
    tok = build_char_tokenizer()
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}"
                         "{% endif %}" + TEMPLATE)
    with pytest.raises(ValueError, match=r"chat template failed on prompt 'Be brief.*no system role"):
        encode_prompts(tok, [ChatPrompt(MESSAGES)])


def test_prompt_file_task_chat_template_knob(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(3))
    tok = build_char_tokenizer()
    tok.chat_template = TEMPLATE
    on = make_task("file", train_path=path, val_path=path)
    train, _ = on.fixed_splits()
    assert all(isinstance(p.prompt, ChatPrompt) for p in train)
    assert chat_template_text(tok, train[1].prompt) == "u:What is 1+1?;a:"
    off = make_task("file", train_path=path, val_path=path, chat_template=False)
    plain, _ = off.fixed_splits()
    assert [type(p.prompt) for p in plain] == [str] * 3 and plain == train  # same text
    ids, _ = encode_prompts(tok, [plain[1].prompt])
    assert ids[0].tolist() == ids_of(tok, "<bos>What is 1+1?")  # knob off: newline join after bos
    assert type(load_prompt_file(path, chat_template=False)[0].prompt) is str
    with pytest.raises(ValueError, match="chat_template must be true or false"):
        make_task("file", train_path=path, val_path=path, chat_template="no")


# ------------------------------------------------------------------------------------------------
# stopping at every stop id
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def policy():
    return build_default_policy(seed=0, **SIZES)


def test_stop_ids_from_tokenizer_and_generation_config(policy):
    model, tok = policy
    assert stop_token_ids(model, tok) == [tok.eos_token_id]  # the default model: one EOS
    gc = model.generation_config
    old = gc.eos_token_id
    try:
        gc.eos_token_id = [tok.eos_token_id, 7, 5]
        assert stop_token_ids(model, tok) == sorted({5, 7, tok.eos_token_id})
        gc.eos_token_id = 9
        assert stop_token_ids(model, tok) == sorted({9, tok.eos_token_id})
        gc.eos_token_id = [len(tok) + 100]
        with pytest.raises(ValueError, match="not a token id"):
            stop_token_ids(model, tok)
    finally:
        gc.eos_token_id = old
    with pytest.raises(ValueError, match="stop_ids"):
        generate(model, tok, ["1+2="], max_new_tokens=2, stop_ids=["<eos>"])


def _stops_at_first(ro, free, stops):
    """Each row of ``ro`` is the row of the unstopped rollout ``free`` cut after its first stop id."""
    for i in range(ro.input_ids.shape[0]):
        toks = free.response_ids[i][free.response_mask[i]].tolist()
        cut = next((j + 1 for j, t in enumerate(toks) if t in stops), len(toks))
        assert ro.response_ids[i][ro.response_mask[i]].tolist() == toks[:cut]


@pytest.mark.parametrize("mode", ["greedy", "row_seeds", "generator"])
def test_generation_stops_at_every_generation_config_eos(policy, mode):
    model, tok = policy
    prompts = ["12+7=", "3*4=", "99-1=", "5+5=", "(2)=", "8/4="] * 3
    kw = {"greedy": dict(greedy=True), "row_seeds": dict(row_seeds=list(range(len(prompts))))}.get(mode, {})

    def run(**extra):
        gen = torch.Generator().manual_seed(3) if mode == "generator" else None
        return generate(model, tok, prompts, max_new_tokens=12, generator=gen, **kw, **extra)

    free = run(stop_ids=[])  # never stops before the cap
    first = free.response_ids[0, 0].item()  # the second EOS: what row 0 emits first
    assert first != tok.eos_token_id
    eos = tok.eos_token_id
    gc = model.generation_config
    old = gc.eos_token_id
    try:
        gc.eos_token_id = [eos, first]
        ro = run()
    finally:
        gc.eos_token_id = old
    assert int(ro.response_mask[0].sum()) == 1 and ro.texts[0] == ""  # stopped at once
    _stops_at_first(ro, free, {eos, first})
    assert not any(tok.convert_ids_to_tokens(first) in t for t in ro.texts)  # stop token not in the text
    only_eos = run()  # the default single EOS: the rows cut at <eos> alone
    _stops_at_first(only_eos, free, {eos})
    assert only_eos.response_mask.sum() > ro.response_mask.sum()


# ------------------------------------------------------------------------------------------------
# custom reward functions
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["reward_fns:partial_credit", "reward_fns.partial_credit",
                                  " reward_fns:partial_credit "])
def test_reward_fn_dotted_paths(tmp_path, path):
    f = write_jsonl(tmp_path / "d.jsonl", rows(3))
    task = make_task("file", train_path=f, val_path=f, reward_fn=path)
    p = task.fixed_splits()[0][2]  # ground truth "4"
    assert task.verify(p, "it is 4") == 1.0 and task.verify(p, "five") == 0.0
    p12 = Problem("x", "12", {"row": 0})
    assert task.verify(p12, "1") == 0.5
    default = make_task("file", train_path=f, val_path=f)
    assert default.verify(p, "\\boxed{4}") == 1.0 and default.verify(p, "it is 4") == 0.0
    for fn, response, reward in (("Scorer.score", "", 0.25), ("with_default", "4", 1.0)):
        task = make_task("file", train_path=f, val_path=f, reward_fn=f"reward_fns:{fn}")
        assert task.verify(p, response) == reward


@pytest.mark.parametrize("path, match", [
    ("no_such_module_xyz:score", "cannot import module 'no_such_module_xyz'"),
    ("reward_fns:missing", "has no attribute 'missing'"),
    ("reward_fns:NOT_CALLABLE", "is a float, not callable"),
    ("reward_fns:two_args", r"signature \(response, ground_truth\) does not take"),
    ("reward_fns", "not a dotted path"),
    (":score", "not a dotted path"),
])
def test_bad_reward_fn_fails_when_the_task_is_built(tmp_path, path, match):
    f = write_jsonl(tmp_path / "d.jsonl", rows(3))
    with pytest.raises(ValueError, match=match) as err:
        make_task("file", train_path=f, val_path=f, reward_fn=path)
    assert repr(path.strip()) in str(err.value)
    with pytest.raises(ValueError, match=match):  # the run config already refuses it: no model is loaded
        DataConfig(task="file", task_knobs={"train_path": f, "val_path": f, "reward_fn": path})
    with pytest.raises(ValueError, match="non-empty dotted path"):
        load_reward_fn("  ")


@pytest.mark.parametrize("path, match", [("reward_fns:raises", "raised RuntimeError: boom"),
                                         ("reward_fns:returns_nan", "finite number"),
                                         ("reward_fns:returns_text", "finite number")])
def test_reward_fn_bad_results_name_the_function(tmp_path, path, match):
    f = write_jsonl(tmp_path / "d.jsonl", rows(3))
    task = make_task("file", train_path=f, val_path=f, reward_fn=path)
    with pytest.raises(ValueError, match=f"reward function '{path}' on row 1 .*{match}"):
        task.verify(task.fixed_splits()[0][1], "2")


# ------------------------------------------------------------------------------------------------
# dtype kept: fp32 training, the checkpoint's dtype saved
# ------------------------------------------------------------------------------------------------

def test_save_policy_dtype_leaves_the_model_alone(policy, tmp_path):
    model, tok = policy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    save_policy(model, tok, tmp_path / "bf", dtype=torch.bfloat16)
    assert model.dtype == torch.float32
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert checkpoint_dtype(tmp_path / "bf") == torch.bfloat16
    modes = {(tmp_path / "bf" / n).stat().st_mode & 0o777 for n in ("config.json", "tokenizer_config.json")}
    assert len(modes) == 1  # the rewritten config.json is as readable as the files save_pretrained wrote
    assert load_policy(tmp_path / "bf")[0].dtype == torch.bfloat16  # inference: the checkpoint's dtype
    with pytest.raises(ValueError, match="floating-point dtype"):
        save_policy(model, tok, tmp_path / "x", dtype=torch.int8)
    with pytest.raises(ValueError, match="floating-point dtype"):
        load_policy(tmp_path / "bf", dtype="bf16")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"dtype": "int64"}))
    with pytest.raises(ValueError, match="not a torch floating-point dtype"):
        checkpoint_dtype(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))  # older key
    assert checkpoint_dtype(tmp_path / "bad") == torch.float16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_trained_model_keeps_the_checkpoint_dtype(tmp_path, dtype):
    """A chat-template model with a custom reward trains in fp32 and is saved in its own dtype again."""
    model, tok = build_default_policy(seed=0, **SIZES)
    tok.chat_template = TEMPLATE
    src = save_policy(model, tok, tmp_path / "src", dtype=dtype)
    f = write_jsonl(tmp_path / "d.jsonl", rows(8))
    cfg = TrainConfig(model=str(src), device="cpu", steps=2, val_every=100, checkpoint_every=100,
                      data=DataConfig(task="file", n_train=8, n_val=2, task_knobs={
                          "train_path": f, "val_path": f, "reward_fn": "reward_fns:even_length",
                          "max_new_tokens": 6}),
                      rollout=RolloutConfig(prompts_per_step=4, group_size=4, max_new_tokens=6),
                      optim=OptimConfig(micro_batch_size=8, num_minibatches=2, lr=3e-3))
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    assert tr.model.dtype == torch.float32 and tr.tok.chat_template == TEMPLATE
    tr.train()
    out = tmp_path / "run" / "model"
    assert checkpoint_dtype(out) == dtype
    with safe_open(out / "model.safetensors", "pt") as sf:
        assert {sf.get_tensor(k).dtype for k in sf.keys()} == {dtype}
    trained, _ = load_policy(out, dtype=torch.float32)
    for k, v in tr.model.state_dict().items():  # the fp32 master weights, rounded once to the saved dtype
        torch.testing.assert_close(trained.state_dict()[k], v.to(dtype).float(), rtol=0, atol=0)
    assert load_policy(out)[0].dtype == dtype
