# experiments/strong-scaling/steps.sh - the strong-scaling steps, sourced by the job scripts of
# strong-scaling/ (GPUs) and cpu-scaling/ (CPU ranks) after study_init (experiments/lib.sh).
#
# strong_scaling MACHINE: for P = 1, 2, 4, ... up to the job's tasks, every algorithm of the
# sweep (Ring with each layout, A2D-NO and A2D-O on --grid auto, Ulysses where kv_heads >= P),
# predicted on MACHINE; then `attnsim model` of the same configurations at model_procs (the
# gallery draws the measured points over the model's lines).
strong_scaling() {
  local machine=$1 P algo layout
  local shape=(--batch "$(sweep batch)" --heads "$(sweep heads)" --kv-heads "$(sweep kv_heads)"
               --head-dim "$(sweep head_dim)" --causal="$(sweep causal)" --dtype "$(sweep dtype)"
               --pass "$(sweep pass)" --machine "$machine")
  local run=(run --progress --seq "$(sweep seq)" --backend "$(sweep backend)" --comm "$(sweep comm)"
             --out "$OUT")
  [ "$(sweep check)" = yes ] && run+=(--check)
  local layouts algos
  IFS=, read -r -a layouts <<<"$(sweep layouts)"
  IFS=, read -r -a algos <<<"$(sweep algos)"
  local kv procs total done=0
  kv=$(sweep kv_heads)
  procs=$(procs_up_to "$NTASKS")
  total=$(( $(echo "$procs" | wc -w) * ${#algos[@]} + 1 ))
  for P in $procs; do
    for algo in "${algos[@]}"; do
      case $algo in
        ring) for layout in "${layouts[@]}"; do
                launch "$P" "${run[@]}" "${shape[@]}" --algo ring --layout "$layout"; done ;;
        a2d-no|a2d-o) launch "$P" "${run[@]}" "${shape[@]}" --algo "$algo" --grid auto ;;
        ulysses) if [ "$kv" -ge "$P" ]; then launch "$P" "${run[@]}" "${shape[@]}" --algo ulysses; fi ;;
      esac
      done=$((done + 1))
      progress "$done" "$total"
    done
  done
  # the model of the same configurations, up to a large P (Ring: every layout)
  local model=(model --procs "$(sweep model_procs)" --seq "$(sweep seq)" --grid auto "${shape[@]}"
               --out "$OUT")
  "$ATTNSIM" "${model[@]}" --algo "$(sweep algos)" --layout "${layouts[0]}" >/dev/null
  if [[ ",$(sweep algos)," == *,ring,* ]]; then
    for layout in "${layouts[@]:1}"; do
      "$ATTNSIM" "${model[@]}" --algo ring --layout "$layout" >/dev/null
    done
  fi
  progress "$total" "$total"
}
