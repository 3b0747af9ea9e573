#!/bin/sh
# Two ranks in two network namespaces joined by a veth pair: MPI over TCP, as between two nodes (Open MPI).
# Usage: netns_two_ranks.sh <mpiexec> <ember_distributed_tests>. Exits 77 (CTest: skipped) with the reason
# when namespaces cannot be made (not root, no iproute2, no CAP_SYS_ADMIN). Removes what it made.
set -u
mpiexec=$1
binary=$2
skip() {
  echo "SKIPPED: $*"
  exit 77
}
[ "$(id -u)" = 0 ] || skip "creating network namespaces needs root"
command -v ip >/dev/null 2>&1 || skip "no ip command (iproute2)"

tag=$$
na=ember_na_$tag
nb=ember_nb_$tag
va=emva$tag
vb=emvb$tag
dir=$(mktemp -d)
cleanup() {
  ip netns del "$na" 2>/dev/null
  ip netns del "$nb" 2>/dev/null  # deleting a namespace deletes its end of the veth pair, and so the pair
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$na" 2>/dev/null || skip "ip netns add failed (no CAP_SYS_ADMIN in this container?)"
ip netns add "$nb" || exit 1
ip link add "$va" type veth peer name "$vb" 2>/dev/null || skip "cannot create a veth pair"
ip link set "$va" netns "$na" && ip link set "$vb" netns "$nb" || exit 1
# Addresses exist only inside the two namespaces made above.
ip -n "$na" addr add 10.213.7.1/30 dev "$va" && ip -n "$na" link set "$va" up && ip -n "$na" link set lo up || exit 1
ip -n "$nb" addr add 10.213.7.2/30 dev "$vb" && ip -n "$nb" link set "$vb" up && ip -n "$nb" link set lo up || exit 1

# mpirun runs in namespace A; its "remote" daemon for 10.213.7.2 starts through this agent in namespace B.
cat >"$dir/agent.sh" <<AGENT
#!/bin/sh
host=\$1
shift
case "\$host" in
  10.213.7.2) ns=$nb ;;
  *) ns=$na ;;
esac
exec ip netns exec "\$ns" sh -c "\$*"
AGENT
chmod +x "$dir/agent.sh"
printf '10.213.7.1 slots=1\n10.213.7.2 slots=1\n' >"$dir/hosts"

run() {
  ip netns exec "$na" "$mpiexec" -n 2 --hostfile "$dir/hosts" --mca plm_rsh_agent "$dir/agent.sh" \
    --mca btl self,tcp --mca btl_tcp_if_include 10.213.7.0/30 --mca oob_tcp_if_include 10.213.7.0/30 \
    -x OMP_NUM_THREADS=1 "$binary" --gtest_color=no "$@"
}
echo "== every CPU collective, rank 0 in $na (10.213.7.1), rank 1 in $nb (10.213.7.2)"
run "--gtest_filter=-*CUDA*:*MultiGPU*" || exit 1
echo "== a stalled rank across the link"
run --gtest_also_run_disabled_tests "--gtest_filter=Stall.*" || exit 1
