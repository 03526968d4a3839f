!! The execution plan of a network, computed once at load: which layers run in which order,
!! where each one reads its inputs and writes its output, and how the workspace is laid out.
!!
!! Layers that do nothing at inference (Dropout, Flatten) are skipped by aliasing their
!! output to their input. An Activation layer whose only input is a linear Dense read by
!! nothing else is fused into it: the Dense step applies the activation (in the product's
!! registers or on cache-sized blocks, fkb_affine) and the Activation layer is skipped. A layer whose value is a network output writes straight into the
!! host's output array; the network inputs are read straight from the host's arrays. Every
!! other value gets a workspace buffer, and a buffer is reused as soon as the last layer that
!! reads its value has run (a chain thus needs two, like ping-pong). Sizes are per sample;
!! a call multiplies them by its batch size.
module fkb_plan
  use iso_fortran_env, only: int64
  use fkb_model, only: fkb_model_t
  use fkb_activation, only: fkb_activation_t
  implicit none
  private
  public :: fkb_plan_t, loc_t, build_plan, LOC_IN, LOC_OUT, LOC_BUF

  integer, parameter :: LOC_IN = 1, LOC_OUT = 2, LOC_BUF = 3

  type :: loc_t
    integer :: kind = 0   !! LOC_IN: host input idx; LOC_OUT: host output idx; LOC_BUF: buffer
    integer :: idx = 0
  end type loc_t

  type :: step_t
    integer :: layer = 0
    type(loc_t), allocatable :: src(:)
    type(loc_t) :: dst
    integer(int64) :: state_off = 0   !! per-sample offset of its recurrent state
    logical :: fused = .false.        !! runs forward_act with `act` (a fused Activation layer)
    type(fkb_activation_t) :: act
  end type step_t

  type :: copy_t
    type(loc_t) :: from   !! after the steps, host output `out` = the value at `from`
    integer :: out = 0
  end type copy_t

  type :: fkb_plan_t
    type(step_t), allocatable :: steps(:)
    type(copy_t), allocatable :: copies(:)
    integer(int64), allocatable :: buf_off(:)   !! per-sample offset of each buffer
    integer(int64) :: values = 0                !! per-sample size of all buffers
    integer(int64) :: scratch = 0               !! per-sample scratch, largest of the steps
    integer(int64) :: state = 0                 !! per-sample recurrent state, all layers
    integer :: max_src = 1                      !! most inputs of one step
  end type fkb_plan_t

contains

  subroutine build_plan(model, stochastic, plan)
    !! The plan for plain inference, or with `stochastic` for Monte-Carlo dropout (stochastic
    !! identity layers run).
    type(fkb_model_t), intent(in) :: model
    logical, intent(in) :: stochastic
    type(fkb_plan_t), intent(out) :: plan
    integer :: ni, nv, i, j, s, v, ns, b, nbuf
    integer, allocatable :: alias(:), last_use(:), outs(:), step_of(:), buf_of(:), readers(:)
    integer, allocatable :: fused_into(:)
    type(fkb_activation_t) :: act
    type(loc_t), allocatable :: loc(:)
    integer(int64), allocatable :: width(:)
    logical, allocatable :: busy(:), computed(:)
    ni = model%n_graph_inputs()
    nv = ni + model%n_layers
    allocate(alias(nv), computed(nv), loc(nv), last_use(nv), step_of(nv), buf_of(nv))
    computed = .false.
    step_of = 0
    buf_of = 0
    do v = 1, nv
      alias(v) = v
    end do
    ! How many layers read each value, outputs counting as readers (fusion needs exactly one).
    allocate(readers(nv), fused_into(model%n_layers))
    readers = 0
    fused_into = 0
    do i = 1, model%n_layers
      do j = 1, size(model%layers(i)%src)
        readers(model%layers(i)%src(j)) = readers(model%layers(i)%src(j)) + 1
      end do
    end do
    outs = model%output_values()
    do j = 1, size(outs)
      readers(outs(j)) = readers(outs(j)) + 1
    end do
    ns = 0
    do i = 1, model%n_layers
      v = ni + i
      associate (l => model%layers(i)%l)
        if (l%is_identity() .and. .not. (stochastic .and. l%is_stochastic())) then
          alias(v) = alias(model%layers(i)%src(1))
        else if (fusable(i)) then
          s = alias(model%layers(i)%src(1)) - ni    ! the Dense's layer index
          fused_into(s) = i
          alias(v) = alias(model%layers(i)%src(1))
        else
          computed(v) = .true.
          ns = ns + 1
          step_of(v) = ns
        end if
      end associate
    end do
    ! Where values live: inputs in the host's arrays, outputs (first occurrence) in the host's.
    do v = 1, ni
      loc(v) = loc_t(LOC_IN, v)
    end do
    outs = model%output_values()
    allocate(plan%copies(0))
    do j = 1, size(outs)
      v = alias(outs(j))
      if (computed(v) .and. loc(v)%kind == 0) then
        loc(v) = loc_t(LOC_OUT, j)
      else
        plan%copies = [plan%copies, copy_t(loc_t(0, v), j)]   ! resolved below
      end if
    end do
    ! Liveness: the last step reading each value (values copied at the end live to the end).
    last_use = 0
    do i = 1, model%n_layers
      if (.not. computed(ni + i)) cycle
      do j = 1, size(model%layers(i)%src)
        v = alias(model%layers(i)%src(j))
        last_use(v) = max(last_use(v), step_of(ni + i))
      end do
    end do
    do j = 1, size(plan%copies)
      last_use(plan%copies(j)%from%idx) = ns + 1
    end do
    ! Steps, assigning buffers greedily (best fit among the free ones).
    allocate(plan%steps(ns), width(0), busy(0))
    nbuf = 0
    s = 0
    do i = 1, model%n_layers
      v = ni + i
      if (.not. computed(v)) cycle
      s = s + 1
      associate (st => plan%steps(s), l => model%layers(i)%l)
        st%layer = i
        if (fused_into(i) > 0) st%fused = model%layers(fused_into(i))%l%activation_only(st%act)
        allocate(st%src(size(model%layers(i)%src)))
        do j = 1, size(st%src)
          st%src(j) = loc(alias(model%layers(i)%src(j)))
        end do
        plan%max_src = max(plan%max_src, size(st%src))
        plan%scratch = max(plan%scratch, l%scratch)
        st%state_off = plan%state
        plan%state = plan%state + l%state_size
        if (loc(v)%kind == 0) then
          b = pick(model%value_size(v))
          loc(v) = loc_t(LOC_BUF, b)
          buf_of(v) = b
        end if
        st%dst = loc(v)
        ! Free the buffers whose values are not read after this step.
        do j = 1, size(model%layers(i)%src)
          call release(alias(model%layers(i)%src(j)), s)
        end do
        call release(v, s)
      end associate
    end do
    do j = 1, size(plan%copies)
      plan%copies(j)%from = loc(plan%copies(j)%from%idx)
    end do
    allocate(plan%buf_off(nbuf))
    plan%values = 0
    do b = 1, nbuf
      plan%buf_off(b) = plan%values
      plan%values = plan%values + width(b)
    end do

  contains

    logical function fusable(i)
      !! Layer i is an Activation layer reading one value, computed by a layer (not an input or
      !! a skipped layer) that absorbs activations, and nothing else reads that value.
      integer, intent(in) :: i
      integer :: src
      fusable = .false.
      if (size(model%layers(i)%src) /= 1) return
      if (.not. model%layers(i)%l%activation_only(act)) return
      src = alias(model%layers(i)%src(1))
      if (src <= ni .or. src /= model%layers(i)%src(1)) return
      if (.not. computed(src) .or. readers(src) /= 1) return
      if (fused_into(src - ni) /= 0) return
      fusable = model%layers(src - ni)%l%absorbs_activation()
    end function fusable

    integer function pick(need)
      integer(int64), intent(in) :: need
      integer :: k
      pick = 0
      do k = 1, nbuf
        if (busy(k)) cycle
        if (width(k) >= need) then
          if (pick == 0) then
            pick = k
          else if (width(k) < width(pick)) then
            pick = k
          end if
        end if
      end do
      if (pick == 0) then   ! none large enough: widen the largest free one, or add one
        do k = 1, nbuf
          if (busy(k)) cycle
          if (pick == 0) then
            pick = k
          else if (width(k) > width(pick)) then
            pick = k
          end if
        end do
      end if
      if (pick == 0) then
        nbuf = nbuf + 1
        width = [width, need]
        busy = [busy, .false.]
        pick = nbuf
      end if
      width(pick) = max(width(pick), need)
      busy(pick) = .true.
    end function pick

    subroutine release(val, step)
      integer, intent(in) :: val, step
      if (buf_of(val) == 0) return
      if (last_use(val) > step) return
      busy(buf_of(val)) = .false.
      buf_of(val) = 0
    end subroutine release

  end subroutine build_plan

end module fkb_plan
